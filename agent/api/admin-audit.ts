// The admin API's audit: every refused request and every change that landed,
// each with the peer's pid, uid and gid (peer-credentials.ts). A write route
// names its audit event in its config; a write route without one stops the
// server from starting, so no new change can slip past the log. Reads are not
// audited and pay nothing: the peer is looked up only for writes and refusals.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { BerthError } from '../../base/errors.js';
import type { AuditInput, AuditLog } from '../audit/audit-log.js';
import { type PeerCred, type PeerCredentials, peerOf } from './peer-credentials.js';

/** What a write route records when it succeeds. */
export interface AuditedChange {
  /** admin.<noun>.<verb>, e.g. admin.instance.create. */
  event: string;
  /**
   * The object and the facts worth keeping, from the request and the answer
   * (parsed JSON, when there is one). Never secrets: no user-data, no keys.
   */
  describe?: (req: FastifyRequest, answer: unknown) => Pick<AuditInput, 'instance' | 'network' | 'detail'>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    audit?: AuditedChange;
  }
  interface FastifyRequest {
    berthError?: BerthError;
  }
}

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
const isWrite = (method: string) => !READS.has(method);

/** The who-part of a record: the peer, or why it is not known. */
function who(peer: PeerCred | { error: string }): Pick<AuditInput, 'peer' | 'detail'> & { by: string } {
  if ('error' in peer) return { detail: { peer_error: peer.error }, by: `an unknown peer (${peer.error})` };
  return { peer, by: `uid ${peer.uid} gid ${peer.gid} pid ${peer.pid}` };
}

export class AdminAudit {
  private readonly deferred = new WeakSet<FastifyRequest>();

  constructor(
    private readonly audit: Pick<AuditLog, 'append'>,
    private readonly peers: PeerCredentials,
  ) {}

  /** Hooks on the root instance, before any route is registered. */
  install(app: FastifyInstance): void {
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      if (methods.some(isWrite) && !route.config?.audit)
        throw new Error(
          `admin route ${methods.join(',')} ${route.url} changes state but names no audit event`,
        );
    });
    // Started as the request arrives, while the peer is surely connected, and
    // not awaited: the lookup runs beside the change; the record awaits both.
    app.addHook('onRequest', async (req) => {
      if (isWrite(req.method)) void peerOf(this.peers, req.raw.socket);
    });
    // The record is on disk before the caller sees the answer.
    app.addHook('onSend', async (req, reply, payload) => {
      const status = reply.statusCode;
      if (status >= 400 && status < 500) await this.refused(req, reply);
      else if (status < 300 && isWrite(req.method) && !this.deferred.has(req))
        await this.changed(req, answerOf(reply, payload));
      return payload;
    });
  }

  /** The route answers before the change is done (a streamed import) and calls changed() or failed() itself. */
  defer(req: FastifyRequest): void {
    this.deferred.add(req);
  }

  async changed(req: FastifyRequest, answer: unknown): Promise<void> {
    const spec = req.routeOptions.config.audit;
    if (!spec) return;
    const peer = who(await peerOf(this.peers, req.raw.socket));
    const what = spec.describe?.(req, answer) ?? {};
    await this.append(req, {
      event: spec.event,
      outcome: 'allowed',
      reason: `done for ${peer.by}`,
      path: `${req.method} ${req.url}`,
      ...what,
      ...(peer.peer ? { peer: peer.peer } : {}),
      detail: { ...what.detail, ...peer.detail },
    });
  }

  /** Who is calling, as the records name them (for a route that stores it, like forgotten_by). */
  peer(req: FastifyRequest): Promise<PeerCred | { error: string }> {
    return peerOf(this.peers, req.raw.socket);
  }

  /**
   * A deferred request whose 2xx answer is itself a refusal (an identity
   * document that does not verify): recorded under the route's own event
   * with outcome refused, and the reason the caller was given.
   */
  async refusedAnswer(req: FastifyRequest, reason: string, answer: unknown): Promise<void> {
    const spec = req.routeOptions.config.audit;
    const peer = who(await peerOf(this.peers, req.raw.socket));
    const what = spec?.describe?.(req, answer) ?? {};
    await this.append(req, {
      event: spec?.event ?? 'admin.request',
      outcome: 'refused',
      reason,
      path: `${req.method} ${req.url}`,
      ...what,
      ...(peer.peer ? { peer: peer.peer } : {}),
      detail: { ...what.detail, ...peer.detail },
    });
  }

  /** A deferred change that failed after the answer began. */
  async failed(req: FastifyRequest, err: BerthError): Promise<void> {
    // As for answered requests: a refusal (4xx) is audited, berthd's own failures are logged.
    if (err.status >= 400 && err.status < 500) await this.refusal(req, err.status, err);
  }

  private refused(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    return this.refusal(req, reply.statusCode, req.berthError);
  }

  private async refusal(req: FastifyRequest, status: number, berr: BerthError | undefined): Promise<void> {
    const peer = who(await peerOf(this.peers, req.raw.socket));
    const change = req.routeOptions.config?.audit?.event;
    await this.append(req, {
      event: 'admin.request',
      outcome: 'refused',
      reason: berr?.message ?? `HTTP ${status}`,
      path: `${req.method} ${req.url}`,
      ...(peer.peer ? { peer: peer.peer } : {}),
      detail: {
        status,
        code: berr?.code ?? 'unknown',
        ...(change ? { change } : {}),
        ...peer.detail,
      },
    });
  }

  private async append(req: FastifyRequest, input: AuditInput): Promise<void> {
    await this.audit.append(input).catch((err) => req.log.error({ err }, 'could not append audit record'));
  }
}

function answerOf(reply: FastifyReply, payload: unknown): unknown {
  if (typeof payload !== 'string' || !String(reply.getHeader('content-type') ?? '').includes('json'))
    return undefined;
  try {
    return JSON.parse(payload);
  } catch {
    return undefined;
  }
}
