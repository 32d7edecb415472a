// The admin API: a fastify instance with the error catalog wired in, and every
// refused request and every change written to the audit log (admin-audit.ts).
// Listening is unix-socket.ts's job.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import { BerthError } from '../../base/errors.js';
import type { MacPool } from '../../hostnet/alloc/mac-pool.js';
import type { NetworkDriver } from '../../hostnet/driver.js';
import type { ImageStore } from '../../images/store.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Observer } from '../daemon/services.js';
import type { ClusterService } from '../services/cluster.js';
import type { DhcpService } from '../services/dhcp.js';
import type { InstanceService } from '../services/instances.js';
import type { NetworkService } from '../services/networks.js';
import type { NoticeService } from '../services/notices.js';
import type { PolicyService } from '../services/policies.js';
import type { SecGroupService } from '../services/secgroups.js';
import { AdminAudit } from './admin-audit.js';
import { Callers } from './caller.js';
import { errorBody, toBerthError } from './error-mapping.js';
import type { PeerCredentials } from './peer-credentials.js';
import { defaultPeerCredentials } from './peercred-addon.js';
import { auditRoutes } from './routes/audit.js';
import { clusterRoutes } from './routes/cluster.js';
import { imageRoutes } from './routes/images.js';
import { instanceRoutes } from './routes/instances.js';
import { leaseRoutes } from './routes/leases.js';
import { metadataRoutes } from './routes/metadata.js';
import { networkRoutes } from './routes/networks.js';
import { noticeRoutes } from './routes/notices.js';
import { policyRoutes } from './routes/policies.js';
import { poolRoutes } from './routes/pool.js';
import { secgroupRoutes } from './routes/secgroups.js';
import { type StatusSource, statusRoutes } from './routes/status.js';
import { API_PREFIX, type SecGroupPortCounters } from './types.js';

export interface AdminServices {
  status: StatusSource;
  audit: AuditLog;
  networks: NetworkService;
  instances: InstanceService;
  macs: MacPool;
  driver: NetworkDriver;
  observer: Observer;
  /** Lease listing; absent in admin servers built without DHCP (unit tests). */
  dhcp?: Pick<DhcpService, 'list'>;
  policies?: PolicyService;
  /** Maintenance notices and host drains. */
  notices?: NoticeService;
  /** The Ed25519 public key (PEM) that signs instance identity documents. */
  metadataPublicKey?: string;
  images?: ImageStore;
  /** Hosts, directory, etcd status and identity checks; with this host's id. */
  clusterService?: { service: ClusterService; hostId: string };
  /** Who is on the other end of an admin connection; SO_PEERCRED (or ss and /proc) by default. */
  peers?: PeerCredentials;
  /** A peer's supplementary groups (joining a secgroup may need one); /proc/<pid>/status by default. */
  peerGroups?: (pid: number) => Promise<number[]>;
  secgroups?: SecGroupService;
  /** A group's member ports on this host with their bridge counters (the enforcer's). */
  secgroupUsage?: (group: string) => Promise<SecGroupPortCounters[]>;
}

export async function buildAdminServer(services: AdminServices, log: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: log.child({ component: 'admin-api' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Before the routes: it refuses to register a write route that names no audit event.
  let peers = services.peers;
  if (!peers) {
    const found = defaultPeerCredentials();
    peers = found.peers;
    log.info({ component: 'admin-api', via: found.via }, 'admin audit names peers by');
  }
  const changes = new AdminAudit(services.audit, peers);
  changes.install(app);

  app.setErrorHandler((err, req, reply) => {
    const berr = toBerthError(err as Error);
    req.berthError = berr;
    if (berr.status >= 500) req.log.error({ err, code: berr.code }, berr.message);
    return reply.status(berr.status).send(errorBody(berr));
  });

  app.setNotFoundHandler((req, reply) => {
    const berr = new BerthError(
      'BERTH_ERR_NOT_FOUND',
      `could not find route "${req.method} ${req.url.split('?')[0]}": no such endpoint`,
    );
    req.berthError = berr;
    return reply.status(404).send(errorBody(berr));
  });

  app.addHook('onResponse', async (req, reply) => {
    req.log.debug(
      { method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime },
      'admin request',
    );
  });

  await app.register(statusRoutes, { prefix: API_PREFIX, source: services.status });
  await app.register(auditRoutes, { prefix: API_PREFIX, audit: services.audit });
  await app.register(networkRoutes, {
    prefix: API_PREFIX,
    networks: services.networks,
    driver: services.driver,
    observer: services.observer,
  });
  const callers = new Callers(peers, services.peerGroups);
  await app.register(instanceRoutes, { prefix: API_PREFIX, instances: services.instances, callers });
  if (services.secgroups)
    await app.register(secgroupRoutes, {
      prefix: API_PREFIX,
      secgroups: services.secgroups,
      usage: services.secgroupUsage ?? (async () => []),
    });
  if (services.notices)
    await app.register(noticeRoutes, {
      prefix: API_PREFIX,
      notices: services.notices,
      instances: services.instances,
    });
  await app.register(poolRoutes, { prefix: API_PREFIX, macs: services.macs });
  if (services.dhcp) await app.register(leaseRoutes, { prefix: API_PREFIX, dhcp: services.dhcp });
  if (services.policies)
    await app.register(policyRoutes, { prefix: API_PREFIX, policies: services.policies });
  if (services.metadataPublicKey)
    await app.register(metadataRoutes, {
      prefix: API_PREFIX,
      publicKeyPem: services.metadataPublicKey,
      ...(services.clusterService ? { keySet: () => services.clusterService?.service.keySet() ?? '' } : {}),
    });
  if (services.images)
    await app.register(imageRoutes, { prefix: API_PREFIX, images: services.images, changes });
  if (services.clusterService)
    await app.register(clusterRoutes, {
      prefix: API_PREFIX,
      cluster: services.clusterService.service,
      hostId: services.clusterService.hostId,
      changes,
    });
  return app;
}
