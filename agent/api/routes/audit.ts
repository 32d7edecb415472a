import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AuditLog, AuditRecord } from '../../audit/audit-log.js';
import { AuditFollowQuery, AuditList, AuditQuery } from '../types.js';

/** A blank line this often tells a follower berthd is alive and finds a dead follower. */
const HEARTBEAT_MS = 15_000;
const REPLAY_PAGE = 1000;

export const auditRoutes: FastifyPluginAsyncTypebox<{ audit: AuditLog }> = async (app, { audit }) => {
  app.get('/audit', { schema: { querystring: AuditQuery, response: { 200: AuditList } } }, async (req) => ({
    records: await audit.query(req.query),
  }));

  // Open follow streams end when berthd stops, so they never hold up the admin server's close.
  const open = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of open) end();
  });

  app.get('/audit/follow', { schema: { querystring: AuditFollowQuery } }, async (req, reply) => {
    const q = req.query;
    const wanted = (r: AuditRecord) =>
      (q.outcome === undefined || r.outcome === q.outcome) && (q.event === undefined || r.event === q.event);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    // Live records arriving during the replay wait here; seq order is kept and nothing is sent twice.
    let last = q.after ?? audit.lastSeq;
    let replaying = true;
    const pending: AuditRecord[] = [];
    const send = (r: AuditRecord) => {
      if (r.seq <= last) return;
      last = r.seq;
      if (wanted(r)) res.write(`${JSON.stringify(r)}\n`);
    };
    const unfollow = audit.follow((r) => (replaying ? pending.push(r) : send(r)));
    const heartbeat = setInterval(() => res.write('\n'), HEARTBEAT_MS);
    const end = () => {
      unfollow();
      clearInterval(heartbeat);
      open.delete(end);
      if (!res.writableEnded) res.end();
    };
    open.add(end);
    res.on('close', end);
    try {
      for (;;) {
        const page = await audit.query({ after: last, limit: REPLAY_PAGE });
        for (const r of page) send(r);
        if (page.length < REPLAY_PAGE) break;
      }
    } catch (err) {
      req.log.error({ err }, 'audit follow replay failed');
      end();
      return;
    }
    replaying = false;
    for (const r of pending) send(r);
  });
};
