// One guest request that waits for a change (long-poll.ts): what the metadata
// HTTP surface calls once the path is found, readable and the parameters
// good. It resolves with the answer to send: the value once its ETag moved
// from the one waited on, or the value as it is when the timeout passes.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Decision, evaluate, type Rule } from '../auth/policy.js';
import { etagOf } from './etag.js';
import { type Answer, bareTag, type MetadataQuery, type Waiter, type Waiters } from './long-poll.js';
import { itemAt } from './path.js';
import { readableBy, recursiveItem } from './recursive.js';
import type { Item } from './tree.js';

/** What of a caller's view (http.ts CallerView) a wait reads; named here so this file imports nothing from http.ts. */
export interface WaitView {
  mac: string;
  items: Map<string, Item>;
  rules: Rule[];
  decisions: Map<string, Decision>;
}

type Found<V> = { ok: true; view: V } | { ok: false; reason: string };

export interface WaitRequest<V extends WaitView> {
  waits: Waiters;
  ip: string;
  view: V;
  /** The answer when the request came (already a 200: the path is readable). */
  first: Extract<Answer, { ok: true }>;
  /** The tag waited away from, bare; undefined: the current one. */
  lastEtag: string | undefined;
  timeoutMs: number;
  /** waits.seq when the request's lookup began. */
  seq: number;
  lookup(ip: string): Found<V> | Promise<Found<V>>;
  /** What the path answers for a view (404, 403, or the item and its tag). */
  answer(view: V): Answer;
  /** Runs fn when the connection is gone. */
  onClose(fn: () => void): void;
  /**
   * Runs fn when the guest has stopped sending (its FIN). The service allows
   * half-open connections (`printf | nc` half-closes and reads on), so a FIN
   * cannot tell a client that gave up (curl -m) from one still reading: both
   * get the value as it is now, as on timeout, and the wait's place is free.
   * Returns what stops listening (a kept-alive socket serves many waits).
   */
  onEnd(fn: () => void): () => void;
}

export type WaitOutcome =
  | { kind: 'answer'; answer: Answer; changed: boolean; waitedMs: number }
  | { kind: 'over'; bound: 'guest' | 'total' }
  | { kind: 'closed' };

export function waitForChange<V extends WaitView>(r: WaitRequest<V>): Promise<WaitOutcome> {
  const from = r.lastEtag ?? bareTag(r.first.etag);
  if (bareTag(r.first.etag) !== from)
    return Promise.resolve({ kind: 'answer', answer: r.first, changed: true, waitedMs: 0 });
  const started = Date.now();
  return new Promise<WaitOutcome>((resolve) => {
    let done = false;
    let last: Answer = r.first;
    let checking = false;
    let again = false;
    const finish = (out: WaitOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stopEnd();
      r.waits.remove(waiter);
      resolve(out);
    };
    const look = async (): Promise<Answer | undefined> => {
      try {
        const found = await r.lookup(r.ip);
        // The guest is no longer who it was (berthd audited the unresolved caller).
        if (!found.ok) return { ok: false, status: 403, reason: found.reason };
        return r.answer(found.view);
      } catch {
        // berthd is away (restarting): keep waiting; the next berthd's
        // `invalidate all` on adoption makes this waiter look again.
        return undefined;
      }
    };
    const recheck = async () => {
      if (checking) {
        again = true;
        return;
      }
      checking = true;
      do {
        again = false;
        const a = await look();
        if (done) return;
        if (a === undefined) continue;
        last = a;
        if (!a.ok || bareTag(a.etag) !== from)
          finish({ kind: 'answer', answer: a, changed: true, waitedMs: Date.now() - started });
      } while (again && !done);
      checking = false;
    };
    const waiter: Waiter = { ip: r.ip, mac: r.view.mac, recheck: () => void recheck() };
    const over = r.waits.add(waiter);
    if (over) {
      done = true;
      resolve({ kind: 'over', bound: over });
      return;
    }
    let ending = false;
    const now = async () => {
      if (ending || done) return;
      ending = true;
      clearTimeout(timer);
      // As GCE does: the value as it is now, 200, when nothing moved in time.
      const a = await look();
      finish({ kind: 'answer', answer: a ?? last, changed: false, waitedMs: Date.now() - started });
    };
    const timer = setTimeout(() => void now(), r.timeoutMs);
    r.onClose(() => finish({ kind: 'closed' }));
    const stopEnd = r.onEnd(() => void now());
    // A wake between the request's lookup and now was missed: look once.
    if (r.waits.seq !== r.seq) waiter.recheck();
  });
}

/**
 * What `path` answers for `view` now: 404 when nothing is there, 403 when
 * the caller may not read it, else the item (the subtree's JSON for
 * `recursive` on a directory; a leaf answers as itself) and its ETag.
 */
export function answerAt(view: WaitView, path: string, recursive: boolean): Answer {
  const item = itemAt(view.items, path);
  if (!item) return { ok: false, status: 404, reason: 'Not Found' };
  const d = view.decisions.get(`read ${item.resource}`) ?? evaluate(view.rules, 'read', item.resource);
  if (!d.allowed) return { ok: false, status: 403, reason: d.reason };
  const served = (recursive && recursiveItem(view.items, path, readableBy(view.decisions))) || item;
  return { ok: true, item: served, etag: etagOf(served) };
}

/** What of the metadata HTTP surface (http.ts) a waiting request uses. */
export interface WaitSurface<V extends WaitView> {
  waits: Waiters;
  backend: {
    lookup(ip: string): Found<V> | Promise<Found<V>>;
    refuse(r: {
      status: number;
      reason: string;
      ip: string;
      path: string;
      view: V;
      count: number;
    }): Promise<void>;
  };
  stats: { refused: number };
  refuse(
    reply: FastifyReply,
    status: number,
    reason: string,
    ip: string,
    where: string,
    view: V,
  ): Promise<unknown>;
  text(reply: FastifyReply, status: number, body: string, headers?: Record<string, string>): unknown;
}

/**
 * Answers a request with wait_for_change=true whose path is found and
 * readable: holds it (the endpoint does, berthd need not be there), then
 * sends the changed value, the value at the timeout, a refusal, or nothing
 * when the guest hung up.
 */
export async function serveWait<V extends WaitView>(
  s: WaitSurface<V>,
  req: FastifyRequest,
  reply: FastifyReply,
  at: { view: V; ip: string; where: string; path: string; q: MetadataQuery; seq: number },
  first: Extract<Answer, { ok: true }>,
): Promise<unknown> {
  const { view, ip, where, path, q } = at;
  const out = await waitForChange({
    waits: s.waits,
    ip,
    view,
    first,
    lastEtag: q.lastEtag,
    timeoutMs: q.timeoutSec * 1000,
    seq: at.seq,
    lookup: (a) => s.backend.lookup(a),
    answer: (v) => answerAt(v, path, q.recursive),
    onClose: (fn) => reply.raw.on('close', fn),
    onEnd: (fn) => {
      const socket = req.raw.socket;
      if (socket.readableEnded || socket.destroyed) queueMicrotask(fn);
      else socket.once('end', fn);
      return () => socket.off('end', fn);
    },
  });
  // The guest hung up: nothing to send, and fastify is told not to wait for an answer.
  if (out.kind === 'closed') {
    reply.hijack();
    return undefined;
  }
  if (out.kind === 'over') {
    s.stats.refused += 1;
    const r = s.waits.refused(ip, out.bound);
    if (r.record !== undefined)
      await s.backend
        .refuse({ status: 429, reason: r.reason, count: r.record, ip, path: where, view })
        .catch(() => undefined);
    return s.text(reply, 429, `refused: ${r.reason}`, { 'retry-after': '1' });
  }
  const a = out.answer;
  if (!a.ok)
    return a.status === 403
      ? s.refuse(reply, 403, a.reason, ip, where, view)
      : s.text(reply, a.status, a.reason);
  return reply.code(200).headers({ 'content-type': a.item.contentType, etag: a.etag }).send(a.item.body);
}
