// The host registry: who is in the cluster, where, with which key, and
// whether it is alive. A host's record is permanent; its liveness is a key
// on an etcd lease, so a host that dies shows lost once the lease runs out,
// and keeps everything it held until an operator forgets it.
import { createHash, createPublicKey } from 'node:crypto';
import type { Logger } from 'pino';
import type { ClusterKV, LivenessLease } from '../../base/cluster-kv.js';
import { type BerthError, causeText, couldNot } from '../../base/errors.js';
import type { Store } from '../../base/store.js';

export const HOST_PREFIX = 'host/';
export const ALIVE_PREFIX = 'alive/';
export const FORGOTTEN_PREFIX = 'forgotten/';

export interface HostRecord {
  id: string;
  address: string;
  /** Ed25519 public key (SPKI PEM) that signs this host's identity documents. */
  public_key_pem: string;
  /** sha256 of the key's DER, hex: what `host list` shows and operators compare. */
  fingerprint: string;
  registered_at: string;
  version: string;
  capacity: { vcpus: number; memory_mib: number };
}

export interface ForgottenHost extends HostRecord {
  forgotten_at: string;
  forgotten_by: string;
}

export interface AliveRecord {
  pid: number;
  since: string;
}

export function keyFingerprint(publicKeyPem: string): string {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex');
}

export interface RegistryOptions {
  kv: ClusterKV;
  /** The mirrored cluster store: reads come from this host's copy. */
  cluster: Store;
  self: Omit<HostRecord, 'fingerprint' | 'registered_at'>;
  leaseSeconds: number;
  log: Logger;
}

export class HostRegistry {
  private lease: LivenessLease | undefined;
  private closed = false;
  private regrant: NodeJS.Timeout | undefined;
  readonly fingerprint: string;

  constructor(private readonly o: RegistryOptions) {
    this.fingerprint = keyFingerprint(o.self.public_key_pem);
  }

  get hostId(): string {
    return this.o.self.id;
  }

  /**
   * Publishes this host. A record under the same id with another key is
   * another machine (or a reinstall): refused, so no host can take over
   * another's identity space; `host forget` frees the id.
   */
  async register(): Promise<void> {
    const key = `${HOST_PREFIX}${this.o.self.id}`;
    // Forgotten with this very key: this state dir's instances had their
    // addresses released (and perhaps handed on); rejoining would serve them twice.
    const forgotten = await this.o.kv.get<ForgottenHost>(`${FORGOTTEN_PREFIX}${this.o.self.id}`);
    if (forgotten && forgotten.fingerprint === this.fingerprint)
      throw couldNot(
        'BERTH_ERR_CONFLICT',
        'register',
        'host',
        this.o.self.id,
        `it was forgotten at ${forgotten.forgotten_at} by ${forgotten.forgotten_by}, and its instances' MACs and IPs were released; start it with a fresh state directory (a new key) to rejoin`,
      );
    const existing = await this.o.kv.get<HostRecord>(key);
    if (existing && existing.fingerprint !== this.fingerprint)
      throw couldNot(
        'BERTH_ERR_CONFLICT',
        'register',
        'host',
        this.o.self.id,
        `the cluster knows this host id with another key (fingerprint ${existing.fingerprint.slice(0, 16)}…, this host's is ${this.fingerprint.slice(0, 16)}…); run "berthctl host forget ${this.o.self.id}" on another host if that machine is gone, or give this one another host_id`,
      );
    const rec: HostRecord = {
      ...this.o.self,
      fingerprint: this.fingerprint,
      registered_at: existing?.registered_at ?? new Date().toISOString(),
    };
    await this.o.kv.batch(
      [{ type: 'put', key, value: rec }],
      existing ? { guards: [{ key, equals: existing }] } : { guards: [{ key, absent: true }] },
    );
    await this.heartbeat();
    this.o.log.info({ host: rec.id, address: rec.address, fingerprint: this.fingerprint }, 'host registered');
  }

  private async heartbeat(): Promise<void> {
    const lease = await this.o.kv.lease(this.o.leaseSeconds);
    this.lease = lease;
    lease.onLost((cause) => {
      if (this.closed) return;
      this.o.log.warn({ cause }, 'liveness lease lost; this host shows lost until it is granted again');
      this.scheduleRegrant();
    });
    const alive: AliveRecord = { pid: process.pid, since: new Date().toISOString() };
    await lease.put(`${ALIVE_PREFIX}${this.o.self.id}`, alive);
  }

  private scheduleRegrant(): void {
    if (this.closed || this.regrant) return;
    this.regrant = setTimeout(() => {
      this.regrant = undefined;
      this.heartbeat()
        .then(() => this.o.log.info('liveness lease granted again'))
        .catch((err) => {
          this.o.log.debug({ err: causeText(err) }, 'could not renew liveness yet');
          this.scheduleRegrant();
        });
    }, 1000);
    this.regrant.unref();
  }

  async hosts(): Promise<{ record: HostRecord; alive: boolean }[]> {
    const alive = new Set(
      (await this.o.cluster.list(ALIVE_PREFIX)).map((e) => e.key.slice(ALIVE_PREFIX.length)),
    );
    return (await this.o.cluster.list<HostRecord>(HOST_PREFIX)).map(({ value }) => ({
      record: value,
      alive: alive.has(value.id),
    }));
  }

  async get(id: string): Promise<HostRecord | undefined> {
    return this.o.cluster.get<HostRecord>(`${HOST_PREFIX}${id}`);
  }

  async isAlive(id: string): Promise<boolean> {
    return (await this.o.cluster.get(`${ALIVE_PREFIX}${id}`)) !== undefined;
  }

  async forgotten(): Promise<ForgottenHost[]> {
    return (await this.o.cluster.list<ForgottenHost>(FORGOTTEN_PREFIX)).map((e) => e.value);
  }

  /** Stops the heartbeat and takes this host's liveness away at once (a clean shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.regrant) clearTimeout(this.regrant);
    await this.lease?.revoke().catch(() => undefined);
  }
}

/** The refusal for forgetting a host that still answers. */
export function stillAlive(id: string): BerthError {
  return couldNot(
    'BERTH_ERR_CONFLICT',
    'forget',
    'host',
    id,
    'it is alive (its liveness lease is held); stop berthd there first, or wait until it shows lost',
  );
}
