// Wires the metadata service into berthd: the policy store, the host keys,
// the endpoint calls, and the invalidations that keep endpoint caches honest
// (an instance created, updated or deleted, a policy changed).
import type { Logger } from 'pino';
import type { Store } from '../../base/store.js';
import type { AuditLog } from '../audit/audit-log.js';
import { describeCaller } from '../auth/policy.js';
import type { Services } from '../daemon/services.js';
import { DELIVER_METHOD } from '../endpoint/refusal-queue.js';
import type { EndpointSupervisor } from '../endpoint/supervisor.js';
import { NoticeService } from '../services/notices.js';
import { POLICY_PREFIX, PolicyService } from '../services/policies.js';
import { type AckRequest, EventAcks } from './event-acks.js';
import { IdentityTokens, type MintRequest } from './identity-tokens.js';
import { loadOrCreateKeys, type MetadataKeys } from './keys.js';
import { MetadataService, type QueuedRefusals, type RefusalReport } from './service.js';

export interface MetadataWiring {
  policies: PolicyService;
  keys: MetadataKeys;
  service: MetadataService;
  identityTokens: IdentityTokens;
  /** Maintenance notices and host drains (this host's store). */
  notices: NoticeService;
  calls: Record<string, (network: string, params: unknown) => Promise<unknown>>;
  /** Connects cache invalidation to the endpoints once they exist. */
  attach(endpoints: EndpointSupervisor): void;
}

export interface KeySetSource {
  keySet(): string;
  onKeysChanged(fn: () => void): void;
}

/** How often a key set that changes by time alone (a forgotten key's window closing) is looked at. */
const KEYSET_CHECK_MS = 60_000;

export async function startMetadata(opts: {
  store: Store;
  audit: AuditLog;
  services: Services;
  hostId: () => string;
  /** The cluster's verification keys as JWKS, and word of their changes (ClusterService). */
  keySet?: KeySetSource;
  log: Logger;
}): Promise<MetadataWiring> {
  const cluster = opts.services.cluster;
  const policies = new PolicyService(opts.services.shared, cluster?.requireConnected);
  await policies.load();
  // A policy set on any host of the cluster is enforced here as soon as the watch brings it.
  cluster?.mirror.onChange(POLICY_PREFIX, () => void policies.reload());
  const keys = await loadOrCreateKeys(opts.store);
  const log = opts.log.child({ component: 'metadata' });
  // This host's store, also in cluster mode: a notice is about this host or one of its instances.
  const notices = new NoticeService(opts.store);
  await notices.load();
  const instances = opts.services.instances;
  const acks = new EventAcks({
    observer: opts.services.observer,
    notices,
    audit: opts.audit,
    identityOf: (id, mac) => {
      const rec = instances.get(id) as ReturnType<typeof instances.get> & { image_sha256?: string };
      return describeCaller({
        instance: rec.id,
        name: rec.name,
        mac,
        ...(rec.role ? { role: rec.role } : {}),
        ...(rec.image_sha256 ? { image: rec.image_sha256 } : {}),
      });
    },
  });
  const service = new MetadataService({
    store: opts.store,
    audit: opts.audit,
    observer: opts.services.observer,
    instances: opts.services.instances,
    networks: opts.services.networks,
    policies,
    notices,
    keys,
    hostId: opts.hostId,
    ...(opts.keySet ? { keySet: () => (opts.keySet as KeySetSource).keySet() } : {}),
    log,
  });
  const identityTokens = new IdentityTokens({
    observer: opts.services.observer,
    instances: opts.services.instances,
    policies,
    keys,
    hostId: opts.hostId,
  });
  return {
    policies,
    keys,
    service,
    identityTokens,
    notices,
    calls: {
      'metadata.event-ack': (network, params) => acks.ack(network, (params ?? {}) as Partial<AckRequest>),
      'metadata.identity-token': (network, params) =>
        identityTokens.mint(network, (params ?? {}) as Partial<MintRequest>),
      'metadata.lookup': (network, params) => service.lookup(network, (params as { ip: string }).ip),
      'metadata.refused': async (network, params) => {
        await service.refused(network, params as RefusalReport);
        return true;
      },
      [DELIVER_METHOD]: async (network, params) => {
        await service.refusedQueued(network, params as QueuedRefusals);
        return true;
      },
      'metadata.password': (network, params) =>
        service.setPassword(network, params as { ip: string; instance: string; value: string }),
      'metadata.statuses': async (network, params) => {
        service.statuses(network, params as { statuses: Record<string, number> });
        return true;
      },
      'metadata.decisions': async (network, params) => {
        service.decisions(network, params as { counts: Record<string, number> });
        return true;
      },
    },
    attach(endpoints) {
      const all = () => endpoints.broadcast({ t: 'invalidate', all: true });
      // An instance's change (create, update, delete) concerns only the views
      // cached under its own addresses: a caller is instance X only from X's
      // IP, and by X's MAC should an address have moved. Other guests keep
      // theirs, so an update wakes no one else and costs them no lookup.
      opts.services.instanceHooks.push((rec) =>
        endpoints.broadcast({
          t: 'invalidate',
          ips: rec.nics.map((n) => n.ip),
          macs: rec.nics.map((n) => n.mac),
        }),
      );
      policies.onChange(all);
      // A notice reaches the guest's next read: its instance's views go (a
      // drain's, everyone's), the same invalidation an `instance update` sends.
      notices.onChange((id) => {
        if (id === undefined) return all();
        try {
          const rec = instances.get(id);
          endpoints.broadcast({
            t: 'invalidate',
            ips: rec.nics.map((n) => n.ip),
            macs: rec.nics.map((n) => n.mac),
          });
        } catch {
          // The instance is gone: nothing of it is cached for long.
        }
      });
      // A deleted instance's notices go with it.
      opts.services.instanceHooks.push((rec) => {
        try {
          instances.get(rec.id);
        } catch {
          void notices
            .forget(rec.id)
            .catch((err: unknown) => log.warn({ err: String(err) }, 'could not forget notices'));
        }
      });
      // Each cached caller view carries the key set: a host joining, being
      // forgotten, or a forgotten key's window closing makes them all stale.
      const keySet = opts.keySet;
      if (!keySet) return;
      keySet.onKeysChanged(all);
      let last = keySet.keySet();
      setInterval(() => {
        const now = keySet.keySet();
        if (now !== last) all();
        last = now;
      }, KEYSET_CHECK_MS).unref();
    },
  };
}
