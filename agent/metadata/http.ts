// The metadata HTTP surface, as the endpoint serves it on 169.254.169.254:80.
// The caller is who the host observed (source IP -> MAC -> port -> instance,
// via the backend), never what a header says. The surface is deliberately
// narrow: GET everywhere, PUT only for the EC2 token, POST only for the
// OpenStack password and a maintenance notice's ack, a Host allow-list against DNS rebinding, no write that
// came through a proxy, and a required token holds for every method. Every
// refusal is reported to the backend, which audits it. Every answer from
// the trees carries an ETag of its bytes (etag.ts); If-None-Match gives 304.
// Identity tokens (JWT) are minted by berthd, never here, and only for a
// request that carries Metadata-Flavor (or a session token) and no proxy's
// header; they carry no ETag (each one is new). `?wait_for_change=true`
// (GCE's long-poll) and `?recursive=true` are read after the policy decision
// and served by long-poll.ts, wait.ts and recursive.ts.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { type Decision, evaluate, type Operation, type Rule } from '../auth/policy.js';
import { etagOf, noneMatch } from './etag.js';
import { ACK_PATH_RE } from './events.js';
import { audienceProblem, audiencesOf } from './identity-token.js';
import { parseMetadataQuery, Waiters } from './long-poll.js';
import { itemAt, queryOf, requestPath } from './path.js';
import { CallerRateLimit, IDENTITY_TOKEN_RATE } from './rate-limit.js';
import type { Tree } from './resources.js';
import {
  MAX_TTL_SECONDS,
  TOKEN_HEADERS,
  type TokenAuthority,
  type TokenIdentity,
  TTL_HEADER,
  ttlProblem,
} from './tokens.js';
import type { Item } from './tree.js';
import { answerAt, serveWait } from './wait.js';

/**
 * Host headers a guest's own client sends. DNS rebinding needs a name the
 * attacker controls, so anything else is refused. `metadata` and
 * `instance-data` are the short names guests commonly resolve to this address.
 */
export const ALLOWED_HOSTS: ReadonlySet<string> = new Set(['169.254.169.254', 'metadata', 'instance-data']);

export interface CallerView {
  network: string;
  ip: string;
  mac: string;
  port: string;
  instance: string;
  /** How the identity reads in audit records. */
  identity: string;
  items: Map<string, Item>;
  rules: Rule[];
  tokens: 'optional' | 'required';
  authority: TokenAuthority;
  who: TokenIdentity;
  /** Decisions already made for this caller, by `op resource`. */
  decisions: Map<string, Decision>;
}

export type Lookup = { ok: true; view: CallerView } | { ok: false; reason: string };

export interface Refusal {
  status: number;
  reason: string;
  ip: string;
  path: string;
  view?: CallerView;
  /** How many refused requests this one record stands for (rate limit); 1 when absent. */
  count?: number;
}

export interface MetadataBackend {
  /** Who is at ip. Answers synchronously from a cache when it can. */
  lookup(ip: string): Lookup | Promise<Lookup>;
  /** Records a refusal in the audit log; the caller sees the answer only after it lands. */
  refuse(r: Refusal): Promise<void>;
  /** Stores the OpenStack password (once). */
  postPassword(view: CallerView, value: string): Promise<{ status: number; message: string }>;
  /** Records the guest's acknowledgement of a maintenance notice (events.ts); berthd checks it is the guest's own. */
  ackEvent?(view: CallerView, id: string): Promise<{ status: number; message: string }>;
  /** Has berthd mint an identity token for the caller (identity-tokens.ts); the endpoint holds no signing key. */
  identityToken(
    view: CallerView,
    audience: string,
  ): Promise<{ status: number; message: string; token?: string }>;
}

export interface MetadataStats {
  served: number;
  refused: number;
  tokensIssued: number;
  /** Identity tokens (JWT) handed out. */
  identityTokens: number;
  /** Allowed decisions by `instance op resource`, drained by the caller for the decision log. */
  allowed: Map<string, number>;
  /** Answers by HTTP status, drained by the caller for berthd's metrics. */
  byStatus: Map<number, number>;
}

const EC2_TOKEN_PATH = '/latest/api/token';
const NO_WAIT_ON_TOKEN =
  'an identity token is new on every request: wait_for_change and recursive do not apply to it';
const TOKEN_PATH_RE = /^\/[^/]+\/api\/token\/?$/;
const PASSWORD_RE = /^\/openstack\/[^/]+\/password\/?$/;

/**
 * Headers a proxy adds. Node lower-cases header names, so these catch
 * X-fOrWaRdEd-FoR too. `Forwarded` (RFC 7239) is the same statement.
 */
const PROXY_HEADERS = ['x-forwarded-for', 'forwarded'] as const;
const PROXY_HEADER_NAMES: Record<(typeof PROXY_HEADERS)[number], string> = {
  'x-forwarded-for': 'X-Forwarded-For',
  forwarded: 'Forwarded',
};

function treeOf(path: string): Tree {
  const end = path.indexOf('/', 1);
  const first = end < 0 ? path.slice(1) : path.slice(1, end);
  return first === 'openstack' || first === 'nocloud' || first === 'berth' ? first : 'ec2';
}

function hostOk(raw: string | undefined): boolean {
  if (raw === undefined) return true;
  const host = raw.toLowerCase().replace(/:80$/, '').replace(/\.$/, '');
  return ALLOWED_HOSTS.has(host);
}

/** `Metadata-Flavor: berth` (or GCE's `Google`, for code written against GCE). */
export const MINT_FLAVORS: ReadonlySet<string> = new Set(['berth', 'google']);
const MINT_HEADER_MISSING = `an identity token needs the header Metadata-Flavor: berth, or an IMDSv2 session token (${TOKEN_HEADERS[0]}); a request without either may be a forged one`;

/** A session token that got this far has been checked already: it is the guest's own. */
function mintHeaderOk(req: FastifyRequest): boolean {
  const flavor = req.headers['metadata-flavor'];
  return (
    (typeof flavor === 'string' && MINT_FLAVORS.has(flavor.trim().toLowerCase())) ||
    tokenOf(req) !== undefined
  );
}

function tokenOf(req: FastifyRequest): string | undefined {
  for (const h of TOKEN_HEADERS) {
    const v = req.headers[h];
    if (typeof v === 'string' && v !== '') return v;
  }
  return undefined;
}

export function buildMetadataApp(
  backend: MetadataBackend,
  limit: CallerRateLimit = new CallerRateLimit(),
  mintLimit: CallerRateLimit = new CallerRateLimit(IDENTITY_TOKEN_RATE),
  waits: Waiters = new Waiters(),
): { app: FastifyInstance; stats: MetadataStats; flushLimited(): Promise<void> } {
  const stats: MetadataStats = {
    served: 0,
    refused: 0,
    tokensIssued: 0,
    identityTokens: 0,
    allowed: new Map(),
    byStatus: new Map(),
  };
  const app = Fastify({ logger: false, bodyLimit: 4096, return503OnClosing: false });
  // Clients like `printf 'GET …' | nc` half-close right after the request; by
  // default Node then ends the socket before an async answer is ready (the
  // test guest saw empty replies to its first request). Node 20's http.Server
  // has the switch, untyped.
  (app.server as unknown as { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  app.addHook('onResponse', (_req, reply, done) => {
    stats.byStatus.set(reply.statusCode, (stats.byStatus.get(reply.statusCode) ?? 0) + 1);
    done();
  });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const text = (reply: FastifyReply, status: number, body: string, headers: Record<string, string> = {}) =>
    reply
      .code(status)
      .headers({ 'content-type': 'text/plain', ...headers })
      .send(`${body}\n`);

  const refuse = async (
    reply: FastifyReply,
    status: number,
    reason: string,
    ip: string,
    path: string,
    view?: CallerView,
    headers?: Record<string, string>,
  ) => {
    stats.refused += 1;
    await backend.refuse({ status, reason, ip, path, ...(view ? { view } : {}) });
    return text(reply, status, `refused: ${reason}`, headers);
  };

  const decide = (view: CallerView, op: Operation, resource: string): Decision => {
    const key = `${op} ${resource}`;
    let d = view.decisions.get(key);
    if (!d) {
      d = evaluate(view.rules, op, resource);
      view.decisions.set(key, d);
    }
    if (d.allowed) {
      const k = `${view.instance} ${key}`;
      stats.allowed.set(k, (stats.allowed.get(k) ?? 0) + 1);
    }
    return d;
  };

  const handle = async (req: FastifyRequest, reply: FastifyReply) => {
    const ip = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    // Normalized once (path.ts): every check below, the policy decision and
    // the audit record see the path the item is served under.
    const path = requestPath(req.url);
    const where = `${req.method} ${path}`;
    const seq = waits.seq;
    const verdict = limit.check(ip);
    if (!verdict.ok) {
      stats.refused += 1;
      const r = verdict.record;
      if (r !== undefined)
        await backend
          .refuse({ status: 429, reason: r.reason, count: r.count, ip, path: where })
          .catch(() => undefined);
      return text(reply, 429, 'refused: over the metadata rate limit', { 'retry-after': '1' });
    }
    let found: Lookup;
    try {
      found = await backend.lookup(ip);
    } catch (err) {
      // berthd did not answer (restarting, overloaded): say so, never guess.
      return text(reply, 503, `metadata unavailable: ${(err as Error).message}`, { 'retry-after': '1' });
    }
    if (!found.ok) {
      // berthd has audited the unresolved caller already.
      stats.refused += 1;
      return text(reply, 403, `refused: ${found.reason}`);
    }
    const view = found.view;
    if (!hostOk(req.headers.host))
      return refuse(reply, 403, `Host "${req.headers.host}" is not the metadata service`, ip, where, view);

    const tree = treeOf(path);
    const method = req.method;
    const tokenPut = method === 'PUT' && tree === 'ec2' && TOKEN_PATH_RE.test(path);
    // A write that went through a proxy is not the guest's own request: a
    // server-side request forgery in the guest (its web app fetching a URL it
    // was handed) must not get a token or set the password. Reads are left
    // alone, as EC2 does; only GET reads.
    if (method !== 'GET') {
      const proxied = PROXY_HEADERS.find((h) => req.headers[h] !== undefined);
      if (proxied)
        return refuse(
          reply,
          403,
          `a ${method} with ${PROXY_HEADER_NAMES[proxied]} is refused (proxied write)`,
          ip,
          where,
          view,
        );
    }
    if (tokenPut) return issueToken(req, reply, view, ip, path, where);
    // Tokens, when required, hold for every other path and method, before
    // anything else is answered: a token-less write is no more the guest's
    // own than a token-less read.
    const token = tokenOf(req);
    if (token !== undefined) {
      const check = view.authority.check(token, view.who);
      if (!check.ok) return refuse(reply, 401, check.reason, ip, where, view);
    } else if (view.tokens === 'required') {
      return refuse(
        reply,
        401,
        `this instance requires a session token; PUT ${EC2_TOKEN_PATH} with ${TTL_HEADER}, then send it as X-aws-ec2-metadata-token`,
        ip,
        where,
        view,
      );
    }
    const password = tree === 'openstack' && PASSWORD_RE.test(path);
    if (method === 'POST' && password) return postPassword(req, reply, view, ip, path, where);
    // A maintenance notice's acknowledgement: past the proxy and token checks above, like the password.
    const ack = tree === 'berth' ? ACK_PATH_RE.exec(path) : null;
    if (method === 'POST' && ack) return ackEvent(reply, view, ip, where, ack[1] as string);
    if (method !== 'GET') {
      const allow = tree === 'ec2' ? 'GET, PUT' : password || ack ? 'GET, POST' : 'GET';
      return refuse(reply, 405, `method ${method} is not allowed here`, ip, where, view, { allow });
    }

    // As EC2 does, a leaf asked for with a trailing slash (botocore asks for
    // `placement/availability-zone/`) and a directory without one both answer.
    const item = itemAt(view.items, path);
    if (!item) return text(reply, 404, 'Not Found');
    const d = decide(view, 'read', item.resource);
    if (!d.allowed) return refuse(reply, 403, d.reason, ip, where, view);
    const query = queryOf(req.url);
    // Long-poll and recursive (long-poll.ts): parameters read after the
    // decision, so a denied path is refused at once, never waited on.
    const q = query === '' ? undefined : parseMetadataQuery(query);
    if (typeof q === 'string') return refuse(reply, 400, q, ip, where, view);
    if (item.resource === 'identity-token') {
      if (q?.wait || q?.recursive) return refuse(reply, 400, NO_WAIT_ON_TOKEN, ip, where, view);
      return mintIdentityToken(req, reply, view, ip, where, query);
    }
    stats.served += 1;
    const a = q?.recursive ? answerAt(view, path, true) : { ok: true as const, item, etag: etagOf(item) };
    if (!a.ok) return text(reply, a.status, a.reason);
    if (q?.wait)
      return serveWait<CallerView>(
        { waits, backend, stats, refuse, text },
        req,
        reply,
        { view, ip, where, path, q, seq },
        a,
      );
    // Checked after the decision: a 304 to a denied path would tell the
    // guest whether its guess of the bytes was right.
    if (noneMatch(req.headers['if-none-match'], a.etag)) return reply.code(304).header('etag', a.etag).send();
    return reply.code(200).headers({ 'content-type': a.item.contentType, etag: a.etag }).send(a.item.body);
  };

  /** A fresh JWT per request, bound to the audience the guest names; never cached, never the same twice. */
  const mintIdentityToken = async (
    req: FastifyRequest,
    reply: FastifyReply,
    view: CallerView,
    ip: string,
    where: string,
    query: string,
  ) => {
    // A token is a credential for any audience the request names, so a
    // server-side request forgery in the guest (its web app fetching a URL it
    // was handed) must not get one: as GCE does, the request must carry a
    // header such a fetch cannot add, and must not have come through a proxy.
    const proxied = PROXY_HEADERS.find((h) => req.headers[h] !== undefined);
    if (proxied)
      return refuse(
        reply,
        403,
        `an identity token request with ${PROXY_HEADER_NAMES[proxied]} is refused (proxied)`,
        ip,
        where,
        view,
      );
    if (!mintHeaderOk(req)) return refuse(reply, 403, MINT_HEADER_MISSING, ip, where, view);
    const audiences = audiencesOf(query);
    const problem = audienceProblem(audiences);
    if (problem) return refuse(reply, 400, problem, ip, where, view);
    const verdict = mintLimit.check(ip);
    if (!verdict.ok) {
      stats.refused += 1;
      const r = verdict.record;
      if (r !== undefined)
        await backend
          .refuse({ status: 429, reason: r.reason, count: r.count, ip, path: where, view })
          .catch(() => undefined);
      return text(reply, 429, 'refused: over the identity token rate limit', { 'retry-after': '1' });
    }
    let r: { status: number; message: string; token?: string };
    try {
      r = await backend.identityToken(view, audiences[0] as string);
    } catch (err) {
      // Only berthd holds the key: without it there is no token, and no guess.
      return text(reply, 503, `metadata unavailable: ${(err as Error).message}`, { 'retry-after': '1' });
    }
    if (r.status >= 400 || r.token === undefined)
      return refuse(reply, r.status >= 400 ? r.status : 500, r.message, ip, where, view);
    stats.served += 1;
    stats.identityTokens += 1;
    return reply
      .code(200)
      .headers({ 'content-type': 'application/jwt', 'cache-control': 'no-store' })
      .send(r.token);
  };

  const issueToken = async (
    req: FastifyRequest,
    reply: FastifyReply,
    view: CallerView,
    ip: string,
    path: string,
    where: string,
  ) => {
    if (path.replace(/\/$/, '') !== EC2_TOKEN_PATH)
      return refuse(reply, 403, `tokens are issued only at ${EC2_TOKEN_PATH}`, ip, where, view);
    const problem = ttlProblem(req.headers[TTL_HEADER]);
    if (problem) return refuse(reply, 400, problem, ip, where, view);
    const ttl = Number(req.headers[TTL_HEADER]);
    stats.tokensIssued += 1;
    return reply
      .code(200)
      .headers({ 'content-type': 'text/plain', [TTL_HEADER]: String(Math.min(ttl, MAX_TTL_SECONDS)) })
      .send(view.authority.issue(view.who, ttl));
  };

  const ackEvent = async (reply: FastifyReply, view: CallerView, ip: string, where: string, id: string) => {
    const d = decide(view, 'write', 'events');
    if (!d.allowed) return refuse(reply, 403, d.reason, ip, where, view);
    if (!backend.ackEvent) return text(reply, 501, 'acknowledgements are not served here');
    let r: { status: number; message: string };
    try {
      r = await backend.ackEvent(view, id);
    } catch (err) {
      return text(reply, 503, `metadata unavailable: ${(err as Error).message}`, { 'retry-after': '1' });
    }
    // An unknown id and another instance's notice alike: refused, and audited with who asked.
    if (r.status >= 400) return refuse(reply, r.status, r.message, ip, where, view);
    stats.served += 1;
    return text(reply, 200, r.message);
  };

  const postPassword = async (
    req: FastifyRequest,
    reply: FastifyReply,
    view: CallerView,
    ip: string,
    _path: string,
    where: string,
  ) => {
    const d = decide(view, 'write', 'password');
    if (!d.allowed) return refuse(reply, 403, d.reason, ip, where, view);
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const r = await backend.postPassword(view, body.toString('utf8'));
    if (r.status >= 400) return refuse(reply, r.status, r.message, ip, where, view);
    return text(reply, r.status, r.message);
  };

  // What fastify refuses itself before the handler runs (a body over the
  // limit, a Content-Length that lies) is a refusal like any other: audited,
  // naming the guest from what the host sees at the address, within the
  // caller's rate limit so it cannot be used to flood the audit path.
  app.setErrorHandler(async (err: { statusCode?: number; message: string }, req, reply) => {
    const status = err.statusCode ?? 500;
    if (status < 400 || status >= 500) return text(reply, 500, 'internal error');
    const ip = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    stats.refused += 1;
    if (limit.check(ip).ok)
      await backend
        .refuse({ status, reason: err.message, ip, path: `${req.method} ${requestPath(req.url)}` })
        .catch(() => undefined);
    return text(reply, status, `refused: ${err.message}`);
  });
  app.all('*', handle);
  const flushLimited = async () => {
    for (const l of [limit, mintLimit])
      for (const { ip, reason, count } of l.drain())
        await backend.refuse({ status: 429, reason, count, ip, path: '*' }).catch(() => undefined);
    for (const { ip, reason, count } of waits.drain())
      await backend.refuse({ status: 429, reason, count, ip, path: '*' }).catch(() => undefined);
  };
  return { app, stats, flushLimited };
}
