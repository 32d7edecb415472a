// A small client for berthd's admin API over its unix socket. berthctl and
// tests talk to berthd only through this.

import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import type { Notice, NoticeCreate, NoticeList } from '../api/notice-types.js';

export type { Notice, NoticeCreate, NoticeList } from '../api/notice-types.js';

import { API_PREFIX } from '../api/prefix.js';
import type {
  AuditFollowQuery,
  AuditList,
  AuditQuery,
  AuditRecord,
  ClusterStatusAnswer,
  DirectoryList,
  ErrorBody,
  ExecResult,
  ForgetAnswer,
  HostList,
  Image,
  ImageImport,
  ImageList,
  Instance,
  InstanceCreate,
  InstanceList,
  InstanceUpdate,
  LeaseList,
  Network,
  NetworkCreate,
  NetworkList,
  Policy,
  PolicyList,
  PoolUsage,
  SecGroup,
  SecGroupCreate,
  SecGroupDetail,
  SecGroupList,
  SecGroupRule,
  SecGroupRuleAdd,
  Status,
  VerifyAnswer,
} from '../api/types.js';

export const DEFAULT_SOCKET = '/run/berth/berthd.sock';

/** An error answered by berthd (code from the catalog) or met on the way to it. */
export class ClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** HTTP status from berthd; 0 when berthd was not reached. */
    readonly status: number,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ClientError';
  }

  get unreachable(): boolean {
    return this.code === 'BERTH_ERR_DAEMON_UNREACHABLE';
  }
}

function unreachable(socket: string, err: NodeJS.ErrnoException): ClientError {
  const why =
    err.code === 'EACCES'
      ? 'permission denied; run as root or as a member of group "berth"'
      : err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
        ? `berthd is not running; start it with \`systemctl start berthd\` or \`berthd --socket ${socket}\``
        : err.message;
  return new ClientError('BERTH_ERR_DAEMON_UNREACHABLE', `could not reach berthd at "${socket}": ${why}`, 0);
}

export class BerthClient {
  constructor(
    readonly socket: string = process.env.BERTH_SOCKET || DEFAULT_SOCKET,
    private readonly timeoutMs = 30_000,
  ) {}

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = httpRequest(
        {
          socketPath: this.socket,
          method,
          path: `${API_PREFIX}${path}`,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              reject(
                new ClientError(
                  'BERTH_ERR_INTERNAL',
                  `berthd answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`,
                  res.statusCode ?? 0,
                ),
              );
              return;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(parsed as T);
            const e = (parsed as ErrorBody | undefined)?.error;
            reject(
              new ClientError(
                e?.code ?? 'BERTH_ERR_INTERNAL',
                e?.message ?? `berthd answered HTTP ${status}`,
                status,
                e?.field,
              ),
            );
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code
            ? unreachable(this.socket, err)
            : new ClientError(
                'BERTH_ERR_DAEMON_UNREACHABLE',
                `could not reach berthd at "${this.socket}": ${err.message}`,
                0,
              ),
        ),
      );
      req.end(payload);
    });
  }

  status(): Promise<Status> {
    return this.request('GET', '/status');
  }

  audit(query: AuditQuery = {}): Promise<AuditList> {
    const qs = new URLSearchParams(
      Object.entries(query).map(([k, v]) => [k, String(v)] as [string, string]),
    ).toString();
    return this.request('GET', `/audit${qs ? `?${qs}` : ''}`);
  }

  /**
   * New audit records as they are written (after `query.after`, replayed first,
   * when given). Runs until the caller stops iterating; throws when berthd
   * closes the stream (stopped or restarting). Aborting `signal` ends it quietly.
   */
  async *followAudit(
    query: AuditFollowQuery = {},
    signal?: AbortSignal,
  ): AsyncGenerator<AuditRecord, void, undefined> {
    const qs = new URLSearchParams(
      Object.entries(query).map(([k, v]) => [k, String(v)] as [string, string]),
    ).toString();
    const path = `${API_PREFIX}/audit/follow${qs ? `?${qs}` : ''}`;
    const req = httpRequest({ socketPath: this.socket, method: 'GET', path, ...(signal ? { signal } : {}) });
    const res = await new Promise<IncomingMessage | undefined>((resolve, reject) => {
      req.on('response', resolve);
      req.on('error', (err: NodeJS.ErrnoException) =>
        signal?.aborted ? resolve(undefined) : reject(unreachable(this.socket, err)),
      );
      req.end();
    });
    if (!res) return;
    try {
      if (res.statusCode !== 200) {
        let text = '';
        for await (const c of res) text += String(c);
        const e = (JSON.parse(text || '{}') as Partial<ErrorBody>).error;
        throw new ClientError(
          e?.code ?? 'BERTH_ERR_INTERNAL',
          e?.message ?? `berthd answered HTTP ${res.statusCode}`,
          res.statusCode ?? 0,
          e?.field,
        );
      }
      let buf = '';
      try {
        for await (const chunk of res) {
          buf += String(chunk);
          for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line.trim()) yield JSON.parse(line) as AuditRecord;
          }
        }
      } catch (err) {
        if (signal?.aborted) return;
        throw err;
      }
      if (signal?.aborted) return;
      throw new ClientError(
        'BERTH_ERR_DAEMON_UNREACHABLE',
        `berthd at "${this.socket}" closed the audit stream (stopped or restarting)`,
        0,
      );
    } finally {
      res.destroy();
      req.destroy();
    }
  }

  networks(): Promise<NetworkList> {
    return this.request('GET', '/networks');
  }

  network(name: string): Promise<Network> {
    return this.request('GET', `/networks/${encodeURIComponent(name)}`);
  }

  createNetwork(body: NetworkCreate): Promise<Network> {
    return this.request('POST', '/networks', body);
  }

  deleteNetwork(name: string): Promise<void> {
    return this.request('DELETE', `/networks/${encodeURIComponent(name)}`);
  }

  instances(): Promise<InstanceList> {
    return this.request('GET', '/instances');
  }

  instance(name: string): Promise<Instance> {
    return this.request('GET', `/instances/${encodeURIComponent(name)}`);
  }

  createInstance(body: InstanceCreate): Promise<Instance> {
    return this.request('POST', '/instances', body);
  }

  deleteInstance(name: string): Promise<void> {
    return this.request('DELETE', `/instances/${encodeURIComponent(name)}`);
  }

  exec(name: string, argv: string[]): Promise<ExecResult> {
    return this.request('POST', `/instances/${encodeURIComponent(name)}/exec`, { argv });
  }

  policies(): Promise<PolicyList> {
    return this.request('GET', '/policies');
  }

  policy(name: string): Promise<Policy> {
    return this.request('GET', `/policies/${encodeURIComponent(name)}`);
  }

  setPolicy(policy: Policy): Promise<Policy> {
    return this.request('PUT', `/policies/${encodeURIComponent(policy.name)}`, policy);
  }

  deletePolicy(name: string): Promise<void> {
    return this.request('DELETE', `/policies/${encodeURIComponent(name)}`);
  }

  /** Replaces what the body names (its security groups); [] leaves every group. */
  instanceNotices(name: string): Promise<NoticeList> {
    return this.request('GET', `/instances/${encodeURIComponent(name)}/notices`);
  }

  scheduleNotice(name: string, body: NoticeCreate): Promise<Notice> {
    return this.request('POST', `/instances/${encodeURIComponent(name)}/notices`, body);
  }

  cancelNotice(name: string, id: string): Promise<void> {
    return this.request('DELETE', `/instances/${encodeURIComponent(name)}/notices/${encodeURIComponent(id)}`);
  }

  hostNotices(): Promise<NoticeList> {
    return this.request('GET', '/host/notices');
  }

  scheduleDrain(body: NoticeCreate): Promise<Notice> {
    return this.request('POST', '/host/notices', body);
  }

  clearDrain(id: string): Promise<void> {
    return this.request('DELETE', `/host/notices/${encodeURIComponent(id)}`);
  }

  updateInstance(name: string, body: InstanceUpdate): Promise<Instance> {
    return this.request('PATCH', `/instances/${encodeURIComponent(name)}`, body);
  }

  secgroups(): Promise<SecGroupList> {
    return this.request('GET', '/secgroups');
  }

  /** The group, and its members' ports on the answering host with their counters. */
  secgroup(name: string): Promise<SecGroupDetail> {
    return this.request('GET', `/secgroups/${encodeURIComponent(name)}`);
  }

  /** Idempotent: the same group again answers the group. */
  createSecgroup(body: SecGroupCreate): Promise<SecGroup> {
    return this.request('POST', '/secgroups', body);
  }

  deleteSecgroup(name: string): Promise<void> {
    return this.request('DELETE', `/secgroups/${encodeURIComponent(name)}`);
  }

  /** Answers the rule as stored, with its stable id; the same rule again answers the same id. */
  addSecgroupRule(name: string, rule: SecGroupRuleAdd): Promise<SecGroupRule> {
    return this.request('POST', `/secgroups/${encodeURIComponent(name)}/rules`, rule);
  }

  deleteSecgroupRule(name: string, id: string): Promise<SecGroupRule> {
    return this.request('DELETE', `/secgroups/${encodeURIComponent(name)}/rules/${encodeURIComponent(id)}`);
  }

  /** Hosts of the cluster (this host alone in single-host mode); `all` adds forgotten ones. */
  hosts(all = false): Promise<HostList> {
    return this.request('GET', all ? '/hosts?all=true' : '/hosts');
  }

  /** Forgets a lost host: its instances leave the directory, their MACs and IPs go into quarantine. */
  forgetHost(id: string): Promise<ForgetAnswer> {
    return this.request('POST', `/hosts/${encodeURIComponent(id)}/forget`);
  }

  clusterStatus(): Promise<ClusterStatusAnswer> {
    return this.request('GET', '/cluster/status');
  }

  /** Every instance of every host (the cluster's directory). */
  directory(): Promise<DirectoryList> {
    return this.request('GET', '/directory');
  }

  /** Checks an identity document and its signature against the cluster's host keys. */
  verifyIdentity(document: string, signature: string): Promise<VerifyAnswer> {
    return this.request('POST', '/identity/verify', { document, signature });
  }

  /** The Ed25519 key that signs instance identity documents. */
  metadataHostKey(): Promise<{ algorithm: 'ed25519'; public_key_pem: string }> {
    return this.request('GET', '/metadata/host-key');
  }

  /** The key set (JWKS) that verifies identity documents and tokens: what guests read. */
  metadataJwks(): Promise<{ keys: { kid: string; kty: string; crv: string; x: string; alg: string }[] }> {
    return this.request('GET', '/metadata/jwks');
  }

  pool(): Promise<PoolUsage> {
    return this.request('GET', '/pool');
  }

  images(): Promise<ImageList> {
    return this.request('GET', '/images');
  }

  image(name: string): Promise<Image> {
    return this.request('GET', `/images/${encodeURIComponent(name)}`);
  }

  deleteImage(name: string): Promise<void> {
    return this.request('DELETE', `/images/${encodeURIComponent(name)}`);
  }

  /** Imports a file on berthd's host; with onProgress, berthd streams the copy's progress. */
  importImage(body: ImageImport, onProgress?: (p: { done: number; total: number }) => void): Promise<Image> {
    if (!onProgress) return this.request('POST', '/images', body);
    return this.importStreaming(body, onProgress);
  }

  private importStreaming(
    body: ImageImport,
    onProgress: (p: { done: number; total: number }) => void,
  ): Promise<Image> {
    const payload = Buffer.from(JSON.stringify(body));
    return new Promise<Image>((resolve, reject) => {
      const req = httpRequest(
        {
          socketPath: this.socket,
          method: 'POST',
          path: `${API_PREFIX}/images`,
          headers: {
            'content-type': 'application/json',
            'content-length': payload.length,
            accept: 'application/x-ndjson',
          },
        },
        (res) => {
          let buf = '';
          let settled = false;
          const line = (text: string) => {
            if (!text.trim()) return;
            let msg: {
              progress?: { done: number; total: number };
              image?: Image;
              error?: ErrorBody['error'];
            };
            try {
              msg = JSON.parse(text);
            } catch {
              return;
            }
            if (msg.progress) onProgress(msg.progress);
            else if (msg.image) {
              settled = true;
              resolve(msg.image);
            } else if (msg.error) {
              settled = true;
              const e = msg.error;
              reject(
                new ClientError(
                  e.code,
                  e.message,
                  res.statusCode && res.statusCode >= 400 ? res.statusCode : 500,
                  e.field,
                ),
              );
            }
          };
          res.on('data', (c: Buffer) => {
            buf += c.toString();
            for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
              line(buf.slice(0, i));
              buf = buf.slice(i + 1);
            }
          });
          res.on('end', () => {
            line(buf);
            if (!settled)
              reject(
                new ClientError(
                  'BERTH_ERR_INTERNAL',
                  `berthd answered HTTP ${res.statusCode} without a result`,
                  res.statusCode ?? 0,
                ),
              );
          });
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(unreachable(this.socket, err)));
      req.end(payload);
    });
  }

  startInstance(name: string): Promise<Instance> {
    return this.request('POST', `/instances/${encodeURIComponent(name)}/start`, {});
  }

  stopInstance(name: string, timeoutSeconds?: number): Promise<Instance> {
    return this.request(
      'POST',
      `/instances/${encodeURIComponent(name)}/stop`,
      timeoutSeconds === undefined ? {} : { timeout_seconds: timeoutSeconds },
    );
  }

  rebootInstance(name: string): Promise<Instance> {
    return this.request('POST', `/instances/${encodeURIComponent(name)}/reboot`, {});
  }

  leases(network?: string): Promise<LeaseList> {
    return this.request('GET', `/leases${network ? `?network=${encodeURIComponent(network)}` : ''}`);
  }
}
