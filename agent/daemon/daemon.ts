// berthd's composition root: opens the store, wires services to the admin
// API, and owns start, reload and stop. Stopping never touches guests.
import { randomBytes } from 'node:crypto';
import { unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { META_KEYS, type Store } from '../../base/store.js';
import { VERSION } from '../../base/version.js';
import { buildAdminServer } from '../api/server.js';
import type { Status } from '../api/types.js';
import { prepareSocketPath, secureSocket } from '../api/unix-socket.js';
import { AuditLog } from '../audit/audit-log.js';
import { AuditSpill } from '../audit/audit-spill.js';
import type { LoadedConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { EndpointSupervisor } from '../endpoint/supervisor.js';
import { loadOrCreateKeys } from '../metadata/keys.js';
import { startMetadata } from '../metadata/wire.js';
import { ClusterService } from '../services/cluster.js';
import { DhcpService } from '../services/dhcp.js';
import type { NetworkRecord } from '../services/networks.js';
import { LevelStore, PID_FILE } from '../store/level-store.js';
import { type ClusterRuntime, startCluster } from './cluster.js';
import { createEndpoints, ensureEndpoint } from './endpoints.js';
import { startGuardDropAudit } from './guard-drops.js';
import { BerthMetrics } from './metrics.js';
import { type MetricsServer, startMetricsServer } from './metrics-server.js';
import type { Notifier } from './sd-notify.js';
import {
  buildServices,
  type DriverFactory,
  reconcileHost,
  type Services,
  startObserving,
} from './services.js';

export interface DaemonDeps {
  log: Logger;
  notifier: Notifier;
  /** Opens the store; the LevelDB store by default. */
  openStore?: (stateDir: string) => Promise<Store>;
  /** Builds the network driver; the real host driver by default. */
  driver?: DriverFactory;
  /** Seconds between full reconcile passes. */
  reconcileSeconds?: number;
}

function defaultHostId(): string {
  const base =
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 40) || 'host';
  return `${base}-${randomBytes(3).toString('hex')}`;
}

export class Daemon {
  private store: Store | undefined;
  private audit: AuditLog | undefined;
  private api: FastifyInstance | undefined;
  private stopWatchdog: () => void = () => {};
  private readonly startedAt = new Date();
  private hostId = '';
  private stopping: Promise<void> | undefined;
  private services: Services | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private endpoints: EndpointSupervisor | undefined;
  private dhcp: DhcpService | undefined;
  private metricsServer: MetricsServer | undefined;
  private guardDrops: { stop(): void } | undefined;
  private cluster: ClusterRuntime | undefined;

  constructor(
    private loaded: LoadedConfig,
    private readonly deps: DaemonDeps,
  ) {}

  get config(): Config {
    return this.loaded.config;
  }

  async start(): Promise<void> {
    const { log, notifier } = this.deps;
    const cfg = this.config;
    notifier.notify({ STATUS: 'opening state store' });
    const store = await (this.deps.openStore ?? LevelStore.open)(cfg.state_dir);
    this.store = store;
    await writeFile(join(cfg.state_dir, PID_FILE), `${process.pid}\n`);
    this.hostId = await this.resolveHostId(store);
    // The audit log's reserve for a full disk (audit-spill.ts). Without one (the
    // disk was full already at start) berthd still runs, and says so.
    const reserve = cfg.audit.reserve_bytes;
    const spill =
      reserve === 0
        ? undefined
        : await AuditSpill.open(join(cfg.state_dir, 'audit-spill'), reserve).catch((err: Error) => {
            log.error(
              { err: err.message },
              'could not make the audit reserve; a full disk will stop audit records',
            );
            return undefined;
          });
    const audit = await AuditLog.open(store, undefined, spill);
    this.audit = audit;
    // Before the host is touched: a live socket means another berthd owns this host's objects.
    await prepareSocketPath(cfg.socket);

    let cluster: ClusterRuntime | undefined;
    if (cfg.cluster) {
      notifier.notify({ STATUS: 'joining the cluster' });
      const keys = await loadOrCreateKeys(store);
      cluster = await startCluster({
        settings: cfg.cluster,
        local: store,
        hostId: this.hostId,
        publicKeyPem: keys.publicKeyPem,
        log,
      });
      this.cluster = cluster;
    }

    notifier.notify({ STATUS: 'reconciling the host' });
    const services = await buildServices(store, cfg, log, this.deps.driver, undefined, cluster);
    this.services = services;
    await services.instances.recover();
    // Adopts berth's running domains and marks missing ones, in the background:
    // a slow or restarting libvirtd must not hold up the admin API or netns guests.
    void services.libvirt.start();
    await reconcileHost(services, log);
    // After the first pass, so the driver holds the desired guard to restore.
    services.driver.watchGuard(log.child({ component: 'guard' }), (r) => {
      // Someone else's change to the guard is a refusal of sorts: the table was put back.
      void audit
        .append({
          event: 'guard.restored',
          outcome: 'refused',
          reason: r.tableGone ? 'table-deleted' : r.ports.length > 0 ? 'port-rules-changed' : 'table-changed',
          detail: {
            table: services.names.guardTable(),
            by: r.by,
            ports: r.ports,
            ms: r.ms,
            events: r.events,
          },
        })
        .catch((err: unknown) => log.error({ err: String(err) }, 'could not audit the guard restore'));
    });
    this.guardDrops = startGuardDropAudit(services, audit, log);
    await startObserving(services, log);
    const dhcp = new DhcpService({
      store,
      audit,
      observer: services.observer,
      ports: services.instances,
      networks: services.networks,
      instanceName: (id) => services.instances.nameOf(id),
      log: log.child({ component: 'dhcp' }),
    });
    this.dhcp = dhcp;
    const keys = await loadOrCreateKeys(store);
    const clusterView = new ClusterService({
      cluster,
      instances: services.instances,
      hostId: this.hostId,
      publicKeyPem: keys.publicKeyPem,
      quarantine: cfg.quarantine,
    });
    const metadata = await startMetadata({
      store,
      audit,
      services,
      hostId: () => this.hostId,
      keySet: clusterView,
      log,
    });
    const endpoints = createEndpoints(
      services,
      log,
      { dhcpPacket: dhcp.handle, calls: metadata.calls },
      // In the state dir, not /run: systemd empties RuntimeDirectory on stop,
      // and an endpoint must be found again after a stop-upgrade-start.
      { dir: join(cfg.state_dir, 'endpoints') },
    );
    metadata.attach(endpoints);
    this.endpoints = endpoints;
    const rate = cfg.metadata.rate_limit;
    const ensure = (net: NetworkRecord) =>
      ensureEndpoint(
        services,
        endpoints,
        net,
        { logLevel: cfg.log_level, metadataRate: { perSecond: rate.per_second, burst: rate.burst } },
        log,
      );
    services.networkHooks.realised.push(ensure);
    services.networkHooks.removed.push((net) => endpoints.stop(net.name));
    // Not awaited: existing endpoints are adopted, new ones start, while the API already answers.
    for (const net of services.networks.all()) void ensure(net);
    const every = (this.deps.reconcileSeconds ?? 60) * 1000;
    this.reconcileTimer = setInterval(() => void reconcileHost(services, log), every);
    this.reconcileTimer.unref();

    const metrics = new BerthMetrics({
      version: VERSION,
      hostId: () => this.hostId,
      instances: () => services.instances.all(),
      macPools: () => services.macs.usage(),
      dhcp: () => dhcp.stats(),
      metadata: () => metadata.service.answers(),
      guardDrops: () => services.driver.guardDrops(),
      secgroupCounters: () => services.secgroupEnforcer.counters(),
      reconcile: () => services.reconciles,
    });
    metrics.instrumentObserver(services.observer);
    if (cfg.metrics.listen !== '') {
      // Metrics are worth less than guests' DHCP and metadata: a taken port is logged, not fatal.
      this.metricsServer = await startMetricsServer(cfg.metrics.listen, metrics, log).catch((err) => {
        log.warn({ err: String(err.message ?? err), listen: cfg.metrics.listen }, 'metrics are off');
        return undefined;
      });
      if (this.metricsServer) log.info({ listen: this.metricsServer.address }, 'metrics on GET /metrics');
    }

    notifier.notify({ STATUS: 'starting admin API' });
    this.api = await buildAdminServer(
      {
        status: { status: () => this.status() },
        audit,
        networks: services.networks,
        instances: services.instances,
        macs: services.macs,
        driver: services.driver,
        observer: services.observer,
        dhcp,
        policies: metadata.policies,
        notices: metadata.notices,
        secgroups: services.secgroups,
        secgroupUsage: (group) => services.secgroupEnforcer.usage(group),
        metadataPublicKey: metadata.keys.publicKeyPem,
        images: services.images,
        clusterService: { service: clusterView, hostId: this.hostId },
      },
      log,
    );
    await this.api.listen({ path: cfg.socket });
    const gid = await secureSocket(cfg.socket, cfg.socket_group);
    if (gid === undefined)
      log.warn({ group: cfg.socket_group }, 'socket group does not exist; admin socket is root-only');

    this.stopWatchdog = notifier.startWatchdog();
    notifier.notify({ READY: 1, STATUS: `serving on ${cfg.socket}`, MAINPID: process.pid });
    log.info(
      {
        version: VERSION,
        host_id: this.hostId,
        state_dir: cfg.state_dir,
        socket: cfg.socket,
        config: this.loaded.source,
      },
      'berthd ready',
    );
  }

  private async resolveHostId(store: Store): Promise<string> {
    const stored = await store.get<string>(META_KEYS.hostId);
    const wanted = this.config.host_id ?? stored ?? defaultHostId();
    if (wanted !== stored) await store.batch([{ type: 'put', key: META_KEYS.hostId, value: wanted }]);
    return wanted;
  }

  async status(): Promise<Status> {
    const store = this.store as Store;
    const networks = this.services?.networks.all().length ?? 0;
    const instances = this.services?.instances.all().length ?? 0;
    const leases = (await store.list('lease/')).length;
    return {
      version: VERSION,
      host_id: this.hostId,
      pid: process.pid,
      uptime: Math.round((Date.now() - this.startedAt.getTime()) / 10) / 100,
      started_at: this.startedAt.toISOString(),
      state_dir: this.config.state_dir,
      socket: this.config.socket,
      config_source: this.loaded.source,
      counts: { networks, instances, leases },
      endpoints: (this.endpoints?.status() ?? []).map((e) => ({
        network: e.network,
        ...(e.pid === undefined ? {} : { pid: e.pid }),
        ready: e.ready,
        adopted: e.adopted,
        restarts: e.restarts,
      })),
      orphan_domains: this.services?.libvirt.orphans() ?? [],
    };
  }

  /** Applies a new, already validated config. Paths that need a restart are kept and reported. */
  reload(next: LoadedConfig): string[] {
    const needRestart = (['state_dir', 'socket', 'socket_group'] as const).filter(
      (k) => next.config[k] !== this.config[k],
    );
    const kept = { ...next.config };
    for (const key of needRestart) (kept as Record<string, unknown>)[key] = this.config[key];
    this.loaded = { config: kept, source: next.source };
    this.deps.log.level = kept.log_level;
    return needRestart;
  }

  /** Graceful stop: close the API and the store. Guests and their ports stay as they are. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.deps.notifier.notify({ STOPPING: 1, STATUS: 'stopping; guests keep running' });
    this.stopWatchdog();
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    this.services?.driver.stopWatching();
    await this.services?.secgroupEnforcer.stop();
    this.guardDrops?.stop();
    this.services?.observer.stop();
    // Endpoints keep serving guests (DHCP clients retry, metadata comes from
    // their caches) until the next berthd adopts them.
    this.endpoints?.detachAll();
    await this.metricsServer?.close();
    await this.dhcp?.stop();
    await this.services?.libvirt.close();
    if (this.api) {
      // Only a socket this process listened on is removed; on a failed start
      // the path may belong to the berthd that is already running.
      const listening = this.api.server.listening;
      await this.api.close();
      if (listening) await unlink(this.config.socket).catch(() => undefined);
    }
    await this.cluster?.close();
    await this.audit?.close();
    if (this.store) {
      await unlink(join(this.config.state_dir, PID_FILE)).catch(() => undefined);
      await this.store.close();
    }
    this.deps.notifier.close();
  }
}
