// ClusterKV on etcd v3, through the npm etcd3 client (gRPC). Every key lives
// under one prefix; a Store batch is one etcd transaction whose guards are its
// compares, so two hosts can never both win a key. The etcd3 package is kept
// to this file: replacing it touches nothing else.
import { isDeepStrictEqual } from 'node:util';
import {
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  isBrokenCircuitError,
  retry,
} from 'cockatiel';
import { Etcd3, type IOptions, isRecoverableError, type Lease, type Watcher } from 'etcd3';
import type * as RPC from 'etcd3/lib/rpc.js';
import type {
  ClusterKV,
  ClusterStatus,
  KvEvent,
  KvSnapshot,
  KvWatch,
  KvWatchHandlers,
  LivenessLease,
} from '../../base/cluster-kv.js';
import { BerthError, clusterUnavailable } from '../../base/errors.js';
import {
  type BatchOp,
  type BatchOptions,
  type Entry,
  guardFailure,
  type ListOptions,
} from '../../base/store.js';

export interface EtcdKvOptions {
  endpoints: string[];
  /** Every key berth writes starts with this; one etcd can hold several clusters. */
  prefix: string;
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  /** Per-call deadline; a call that cannot finish in time counts as the cluster being unavailable. */
  callTimeoutMs?: number;
  dialTimeoutMs?: number;
}

const enc = (s: string) => Buffer.from(s, 'utf8');

/** The first key after every key that starts with prefix, as etcd's range_end wants it. */
function rangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

function causeOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class EtcdKv implements ClusterKV {
  readonly endpoints: readonly string[];
  private readonly client: Etcd3;
  private readonly prefix: string;
  private closed = false;

  constructor(opts: EtcdKvOptions) {
    this.endpoints = [...opts.endpoints];
    this.prefix = opts.prefix;
    const callTimeout = opts.callTimeoutMs ?? 2000;
    const options: IOptions = {
      hosts: [...opts.endpoints],
      dialTimeout: opts.dialTimeoutMs ?? 3000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeout }),
      faultHandling: {
        // A member that fails three calls in a row is skipped for a second, then tried again.
        host: () =>
          circuitBreaker(handleWhen(isRecoverableError), {
            halfOpenAfter: 1000,
            breaker: new ConsecutiveBreaker(3),
          }),
        // An election after a leader dies takes about a second: keep trying, on
        // another member each time, for about four before calling the cluster unavailable.
        global: retry(
          handleWhen((err) => isRecoverableError(err) || isBrokenCircuitError(err)),
          {
            maxAttempts: 8,
            backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }),
          },
        ),
        // A watch whose member died reconnects to another within about a second.
        watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }).next(),
      },
    };
    if (opts.tls)
      options.credentials = {
        rootCertificate: opts.tls.ca,
        ...(opts.tls.key ? { privateKey: opts.tls.key } : {}),
        ...(opts.tls.cert ? { certChain: opts.tls.cert } : {}),
      };
    this.client = new Etcd3(options);
  }

  private full(key: string): Buffer {
    return enc(this.prefix + key);
  }

  private relative(key: Buffer): string {
    return key.toString('utf8').slice(this.prefix.length);
  }

  /** Maps a transport failure onto the catalog, naming what was tried. */
  private unavailable(verb: string, object: string, err: unknown): BerthError {
    if (err instanceof BerthError) return err;
    return clusterUnavailable(verb, object, this.endpoints, causeOf(err));
  }

  private async call<T>(verb: string, object: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw this.unavailable(verb, object, new Error('the client is closed'));
    try {
      return await fn();
    } catch (err) {
      throw this.unavailable(verb, object, err);
    }
  }

  async get<T>(key: string): Promise<T | undefined> {
    const res = await this.call('read', `key "${key}"`, () => this.client.kv.range({ key: this.full(key) }));
    const kv = res.kvs[0];
    return kv ? (JSON.parse(kv.value.toString('utf8')) as T) : undefined;
  }

  private async range(prefix: string, options: ListOptions = {}): Promise<RPC.IRangeResponse> {
    const start = this.full(prefix);
    const req: RPC.IRangeRequest = {
      key: options.after !== undefined ? Buffer.concat([this.full(options.after), Buffer.from([0])]) : start,
      range_end: rangeEnd(start),
    };
    if (options.reverse) {
      req.sort_order = 'Descend';
      req.sort_target = 'Key';
    }
    if (options.limit !== undefined) req.limit = options.limit;
    return this.call('list', `keys under "${prefix}"`, () => this.client.kv.range(req));
  }

  async list<T>(prefix: string, options: ListOptions = {}): Promise<Entry<T>[]> {
    const res = await this.range(prefix, options);
    return res.kvs.map((kv) => ({
      key: this.relative(kv.key),
      value: JSON.parse(kv.value.toString('utf8')) as T,
    }));
  }

  async snapshot<T>(prefix: string): Promise<KvSnapshot<T>> {
    const res = await this.range(prefix);
    return {
      entries: res.kvs.map((kv) => ({
        key: this.relative(kv.key),
        value: JSON.parse(kv.value.toString('utf8')) as T,
      })),
      revision: Number(res.header.revision),
    };
  }

  async batch(ops: BatchOp[], options: BatchOptions = {}): Promise<void> {
    await this.batchAt(ops, options);
  }

  async batchAt(ops: BatchOp[], options: BatchOptions = {}): Promise<number> {
    if (ops.length === 0) return 0;
    const guards = options.guards ?? [];
    const compare: RPC.ICompare[] = guards.map((g) =>
      'absent' in g
        ? { key: this.full(g.key), target: 'Version', result: 'Equal', version: 0 }
        : { key: this.full(g.key), target: 'Value', result: 'Equal', value: enc(JSON.stringify(g.equals)) },
    );
    const success: RPC.IRequestOp[] = ops.map((op) =>
      op.type === 'put'
        ? { request_put: { key: this.full(op.key), value: enc(JSON.stringify(op.value)) } }
        : { request_delete_range: { key: this.full(op.key) } },
    );
    const what = `a batch of ${ops.length} change(s) starting at "${ops[0]?.key}"`;
    const res = await this.call('write', what, () => this.client.kv.txn({ compare, success }));
    if (res.succeeded) return Number(res.header.revision);
    // A retried transaction whose first attempt landed (the leader died before it
    // answered) fails its own guards: if the batch's outcome is already there, it landed.
    if (await this.landed(ops)) return Number(res.header.revision);
    const failed = await this.firstFailedGuard(guards.map((g, i) => ({ g, c: compare[i] as RPC.ICompare })));
    throw new BerthError('BERTH_ERR_CONFLICT', `could not write ${what}: ${failed}`);
  }

  private async landed(ops: BatchOp[]): Promise<boolean> {
    for (const op of ops) {
      const now = await this.get<unknown>(op.key);
      if (op.type === 'put' ? !isDeepStrictEqual(now, op.value) : now !== undefined) return false;
    }
    return true;
  }

  private async firstFailedGuard(
    pairs: { g: Parameters<typeof guardFailure>[0]; c: RPC.ICompare }[],
  ): Promise<string> {
    for (const { g } of pairs) {
      const now = await this.get<unknown>(g.key);
      if ('absent' in g ? now !== undefined : !isDeepStrictEqual(now, g.equals)) return guardFailure(g);
    }
    return 'a guard failed, and the key changed again since';
  }

  async watch(prefix: string, fromRevision: number, handlers: KvWatchHandlers): Promise<KvWatch> {
    const watcher: Watcher = await this.call('watch', `keys under "${prefix}"`, () =>
      this.client.watch().prefix(this.full(prefix)).startRevision(String(fromRevision)).create(),
    );
    watcher.on('data', (res: RPC.IWatchResponse) => {
      if (res.events.length === 0) return;
      const events: KvEvent[] = res.events.map((e) => ({
        type: e.type === 'Put' ? 'put' : 'del',
        key: this.relative(e.kv.key),
        ...(e.type === 'Put' ? { value: JSON.parse(e.kv.value.toString('utf8')) as unknown } : {}),
        revision: Number(e.kv.mod_revision),
      }));
      handlers.onEvents(events);
    });
    watcher.on('connected', () => handlers.onState?.('connected'));
    watcher.on('disconnected', (err) => handlers.onState?.('disconnected', causeOf(err)));
    // etcd cancels a watch that asks for a compacted revision; the owner reloads.
    watcher.on('error', (err) => handlers.onReset?.(causeOf(err)));
    return { close: () => watcher.cancel() };
  }

  async lease(ttlSeconds: number): Promise<LivenessLease> {
    const lease: Lease = this.client.lease(ttlSeconds, { autoKeepAlive: true });
    const lost: ((cause: string) => void)[] = [];
    let gone = false;
    lease.on('lost', (err) => {
      if (gone) return;
      gone = true;
      for (const fn of lost) fn(causeOf(err));
    });
    const id = await this.call('grant', `a ${ttlSeconds} s lease`, () => lease.grant());
    return {
      id,
      put: async (key, value) => {
        await this.call('write', `key "${key}" on lease ${id}`, () =>
          lease.put(this.full(key)).value(JSON.stringify(value)).exec(),
        );
      },
      onLost: (fn) => lost.push(fn),
      revoke: async () => {
        gone = true;
        await this.call('revoke', `lease ${id}`, () => lease.revoke());
      },
    };
  }

  async status(): Promise<ClusterStatus> {
    const [st, members] = await this.call('read', 'the cluster status', () =>
      Promise.all([this.client.maintenance.status(), this.client.cluster.memberList({})]),
    );
    return {
      endpoints: [...this.endpoints],
      members: members.members.map((m) => ({
        id: m.ID,
        name: m.name,
        clientUrls: m.clientURLs,
        isLeader: m.ID === st.leader,
      })),
      leader: members.members.find((m) => m.ID === st.leader)?.name,
      revision: Number(st.header.revision),
      version: st.version,
      dbSizeBytes: Number(st.dbSize),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }
}
