// The operator's view of the cluster: hosts and their state, the instance
// directory of every host, etcd's health beside this host's watch, forgetting
// a dead host, and checking identity documents signed anywhere in it. Every
// read comes from this host's mirror (etcd is asked only for its own status),
// so these answer while etcd is away. Without a cluster the same calls answer
// for this host alone.
import type { ClusterKV } from '../../base/cluster-kv.js';
import { couldNot } from '../../base/errors.js';
import type { Store } from '../../base/store.js';
import { VERSION } from '../../base/version.js';
import {
  ALIVE_PREFIX,
  FORGOTTEN_PREFIX,
  type ForgottenHost,
  HOST_PREFIX,
  type HostRecord,
  keyFingerprint,
} from '../cluster/registry.js';
import { type ClusterView, type ForgetResult, forgetHost } from './host-forget.js';

export type { ForgetResult } from './host-forget.js';
export type { VerifyResult } from './host-keys.js';

import {
  type HostState,
  keySetText,
  nextExpiry,
  type TrustedKey,
  trustedKeys,
  type VerifyResult,
  verifyIdentity,
} from './host-keys.js';
import { DIRECTORY_PREFIX, type DirectoryEntry, directoryEntry, type InstanceRecord } from './instances.js';

/** What this service uses of the cluster runtime (agent/daemon/cluster.ts). */
export interface ClusterParts {
  settings: { forgotten_key_hours: number };
  kv: Pick<ClusterKV, 'status' | 'endpoints'>;
  mirror: ClusterView & {
    state: string;
    appliedRevision: number;
    lastEventAt: number;
    onChange(prefix: string, fn: () => void): () => void;
  };
  shared: Store;
  requireConnected(verb: string, object: string): void;
}

export interface ClusterServiceOptions {
  cluster: ClusterParts | undefined;
  instances: { all(): InstanceRecord[] };
  hostId: string;
  publicKeyPem: string;
  quarantine: { mac_seconds: number; ip_seconds: number };
  now?: () => number;
  /** etcd's status gets this long before `cluster status` answers without it. */
  statusTimeoutMs?: number;
}

export interface HostInfo {
  id: string;
  address: string;
  fingerprint: string;
  state: HostState;
  instances: number;
  registered_at?: string;
  version: string;
  forgotten_at?: string;
  forgotten_by?: string;
}

export interface ClusterStatusInfo {
  mode: 'cluster' | 'single-host';
  host_id: string;
  etcd?: {
    endpoints: string[];
    members?: { id: string; name: string; client_urls: string[]; leader: boolean }[];
    leader?: string;
    revision?: number;
    version?: string;
    db_size_bytes?: number;
    error?: string;
  };
  watch?: {
    state: string;
    applied_revision: number;
    lag_revisions?: number;
    ms_since_last_event?: number;
  };
}

export class ClusterService {
  private readonly now: () => number;
  private keys: { text: string; until: number } | undefined;
  private readonly keyListeners: (() => void)[] = [];

  constructor(private readonly o: ClusterServiceOptions) {
    this.now = o.now ?? Date.now;
    const onKeys = () => {
      this.keys = undefined;
      for (const fn of this.keyListeners) fn();
    };
    o.cluster?.mirror.onChange(HOST_PREFIX, onKeys);
    o.cluster?.mirror.onChange(FORGOTTEN_PREFIX, onKeys);
  }

  get clustered(): boolean {
    return this.o.cluster !== undefined;
  }

  /** Every host: alive or lost, and with `all` the forgotten ones too; by id. */
  hosts(all = false): HostInfo[] {
    const c = this.o.cluster;
    if (!c)
      return [
        {
          id: this.o.hostId,
          address: 'local',
          fingerprint: keyFingerprint(this.o.publicKeyPem),
          state: 'alive',
          instances: this.o.instances.all().length,
          version: VERSION,
        },
      ];
    const counts = new Map<string, number>();
    for (const { value } of c.mirror.list<DirectoryEntry>(DIRECTORY_PREFIX))
      counts.set(value.host, (counts.get(value.host) ?? 0) + 1);
    const info = (r: HostRecord, state: HostState): HostInfo => ({
      id: r.id,
      address: r.address,
      fingerprint: r.fingerprint,
      state,
      instances: counts.get(r.id) ?? 0,
      registered_at: r.registered_at,
      version: r.version,
    });
    const out = c.mirror
      .list<HostRecord>(HOST_PREFIX)
      .map(({ value }) => info(value, c.mirror.get(`${ALIVE_PREFIX}${value.id}`) ? 'alive' : 'lost'));
    if (all)
      for (const { value } of c.mirror.list<ForgottenHost>(FORGOTTEN_PREFIX))
        out.push({
          ...info(value, 'forgotten'),
          forgotten_at: value.forgotten_at,
          forgotten_by: value.forgotten_by,
        });
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Every instance of every host, by host then name; this host's own list without a cluster. */
  directory(): DirectoryEntry[] {
    const c = this.o.cluster;
    const entries = c
      ? c.mirror.list<DirectoryEntry>(DIRECTORY_PREFIX).map((e) => e.value)
      : this.o.instances.all().map((r) => directoryEntry(r, this.o.hostId));
    return entries.sort((a, b) =>
      a.host !== b.host ? (a.host < b.host ? -1 : 1) : a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
  }

  /** Forgets a lost host: frees nothing, quarantines its MACs and IPs (host-forget.ts). */
  async forget(id: string, by: string): Promise<ForgetResult> {
    const c = this.o.cluster;
    if (!c) {
      const self = id === this.o.hostId;
      throw couldNot(
        self ? 'BERTH_ERR_CONFLICT' : 'BERTH_ERR_NOT_FOUND',
        'forget',
        'host',
        id,
        self ? 'it is this host' : 'this berthd is a single host (no cluster: block); it knows no other host',
      );
    }
    c.requireConnected('forget', `host "${id}"`);
    return forgetHost(id, by, {
      view: c.mirror,
      store: c.shared,
      quarantine: { macSeconds: this.o.quarantine.mac_seconds, ipSeconds: this.o.quarantine.ip_seconds },
      selfId: this.o.hostId,
      isAlive: (h) => c.mirror.get(`${ALIVE_PREFIX}${h}`) !== undefined,
      now: this.now,
    });
  }

  /** etcd's own view and this host's watch; etcd away is a field, not a failure. */
  async status(): Promise<ClusterStatusInfo> {
    const c = this.o.cluster;
    if (!c) return { mode: 'single-host', host_id: this.o.hostId };
    const m = c.mirror;
    const watch: NonNullable<ClusterStatusInfo['watch']> = {
      state: m.state,
      applied_revision: m.appliedRevision,
      ...(m.lastEventAt > 0 ? { ms_since_last_event: this.now() - m.lastEventAt } : {}),
    };
    const etcd: NonNullable<ClusterStatusInfo['etcd']> = { endpoints: [...c.kv.endpoints] };
    const wait = this.o.statusTimeoutMs ?? 3000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const st = await Promise.race([
        c.kv.status(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${wait} ms`)), wait);
        }),
      ]);
      Object.assign(etcd, {
        members: st.members.map((x) => ({
          id: x.id,
          name: x.name,
          client_urls: x.clientUrls,
          leader: x.isLeader,
        })),
        ...(st.leader ? { leader: st.leader } : {}),
        revision: st.revision,
        version: st.version,
        db_size_bytes: st.dbSizeBytes,
      });
      watch.lag_revisions = Math.max(0, st.revision - m.appliedRevision);
    } catch (err) {
      etcd.error = err instanceof Error ? err.message : String(err);
    } finally {
      clearTimeout(timer);
    }
    return { mode: 'cluster', host_id: this.o.hostId, etcd, watch };
  }

  /** The keys that verify documents now: live, lost and recently forgotten hosts (or this host's own). */
  trusted(): TrustedKey[] {
    const c = this.o.cluster;
    if (!c)
      return [
        {
          host: this.o.hostId,
          state: 'alive',
          publicKeyPem: this.o.publicKeyPem,
          fingerprint: keyFingerprint(this.o.publicKeyPem),
        },
      ];
    return trustedKeys(this.sources(c));
  }

  private sources(c: ClusterParts) {
    return {
      hosts: c.mirror.list<HostRecord>(HOST_PREFIX).map(({ value }) => ({
        record: value,
        alive: c.mirror.get(`${ALIVE_PREFIX}${value.id}`) !== undefined,
      })),
      forgotten: c.mirror.list<ForgottenHost>(FORGOTTEN_PREFIX).map((e) => e.value),
      forgottenKeyHours: c.settings.forgotten_key_hours,
      now: this.now(),
    };
  }

  verify(document: string, signature: string): VerifyResult {
    const c = this.o.cluster;
    return verifyIdentity(document, signature, this.trusted(), (h) =>
      c?.mirror.get<ForgottenHost>(`${FORGOTTEN_PREFIX}${h}`),
    );
  }

  /**
   * The JWKS document guests read (`/latest/dynamic/berth/jwks.json`). Kept
   * until the registry changes or a forgotten key's window closes, so a
   * metadata lookup costs no key parsing.
   */
  keySet(): string {
    const now = this.now();
    if (this.keys && now < this.keys.until) return this.keys.text;
    const c = this.o.cluster;
    const until = c ? (nextExpiry(this.sources(c)) ?? Number.POSITIVE_INFINITY) : Number.POSITIVE_INFINITY;
    const text = keySetText(this.trusted());
    this.keys = { text, until };
    return text;
  }

  /** Told when the key set may have changed (a host registered, lost its record, was forgotten). */
  onKeysChanged(fn: () => void): void {
    this.keyListeners.push(fn);
  }

  /** When the next forgotten key stops verifying (the key set changes by time alone), or undefined. */
  nextKeyExpiry(): number | undefined {
    const c = this.o.cluster;
    return c ? nextExpiry(this.sources(c)) : undefined;
  }
}
