// Who is calling? For each observed network, the endpoint namespace's neighbour
// table maps the caller's source IP to a MAC, the root namespace's bridge FDB maps
// that MAC to a port, and the PortDirectory maps the port to an instance. Every
// table is held in memory and fed by monitor events, so resolveNow() is a handful
// of map lookups and no request ever starts a process.

import { type CommandRunner, osCommandRunner } from '../../base/command.js';
import { BerthError, couldNot } from '../../base/errors.js';
import type { Names } from '../names.js';
import { Feed, type FeedOptions } from './feed.js';
import { type MonitorSpawner, type ObserveLogger, osMonitorSpawner } from './monitor.js';
import {
  type FdbEvent,
  type FdbRecord,
  type NeighEvent,
  type NeighRecord,
  parseFdbDump,
  parseFdbLine,
  parseNeighDump,
  parseNeighLine,
  plainIPv4,
} from './parse.js';
import { decideIp, decideMac, type PortDirectory, type ResolveResult, TRANSIENT_REASONS } from './resolve.js';
import { type FdbChange, FdbView, type NeighChange, NeighView } from './views.js';

export interface ObservedNetwork {
  name: string;
  /** The network's bridge in the root namespace. */
  bridge: string;
  /** Only on a VLAN-filtering bridge, where the FDB is per VLAN. */
  vlan?: number;
  /** The endpoint namespace that serves DHCP and metadata for this network. */
  netns: string;
}

export type ObserveChange = FdbChange | NeighChange;

export interface IdentityObserverOptions {
  /** Bridges that do not carry this prefix are ignored. */
  names: Names;
  directory: PortDirectory;
  runner?: CommandRunner;
  spawner?: MonitorSpawner;
  logger?: ObserveLogger;
  /** Full dumps repair what the event stream missed; default 30 s. */
  resyncMs?: number;
  /** How long resolve() waits for a missing neighbour or FDB entry to arrive before dumping the tables; default 100 ms. */
  missWaitMs?: number;
  settleMs?: number;
  backoff?: { initialMs: number; maxMs: number };
}

interface Waiter {
  ip: string;
  check(): void;
}

export class IdentityObserver {
  private readonly o: Required<Omit<IdentityObserverOptions, 'names' | 'directory'>>;
  private readonly fdb: FdbView;
  private readonly fdbFeed: Feed<FdbEvent, FdbRecord[]>;
  private readonly networks = new Map<string, ObservedNetwork>();
  private readonly neigh = new Map<
    string,
    { view: NeighView; feed: Feed<NeighEvent, NeighRecord[]>; ready: Promise<void> }
  >();
  private readonly listeners = new Set<(change: ObserveChange) => void>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private started = false;

  constructor(private readonly opts: IdentityObserverOptions) {
    this.o = {
      runner: opts.runner ?? osCommandRunner,
      spawner: opts.spawner ?? osMonitorSpawner,
      logger: opts.logger ?? {},
      resyncMs: opts.resyncMs ?? 30_000,
      missWaitMs: opts.missWaitMs ?? 100,
      settleMs: opts.settleMs ?? 50,
      backoff: opts.backoff ?? { initialMs: 100, maxMs: 5_000 },
    };
    this.fdb = new FdbView(
      (bridge) => opts.names.owns(bridge),
      (change) => this.changed(change),
    );
    this.fdbFeed = this.feed(
      'bridge FDB of namespace',
      'root',
      ['bridge', 'monitor', 'fdb'],
      ['bridge', '-j', 'fdb', 'show'],
      {
        parseLine: parseFdbLine,
        parseDump: parseFdbDump,
        apply: (e) => this.fdb.apply(e),
        replace: (s) => this.fdb.replace(s),
      },
    );
  }

  /** Starts watching the root namespace's FDB; resolves after the first full dump. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    try {
      await this.fdbFeed.start();
    } catch (err) {
      this.started = false;
      throw err;
    }
  }

  /** Kills every monitor child; pending resolve() calls answer from what is known. */
  stop(): void {
    this.started = false;
    this.fdbFeed.stop();
    for (const { feed } of this.neigh.values()) feed.stop();
    this.neigh.clear();
    this.networks.clear();
    for (const set of this.waiters.values()) for (const w of set) w.check();
  }

  /** Starts watching a network's endpoint namespace; safe to call again with the same network. */
  async addNetwork(network: ObservedNetwork): Promise<void> {
    if (!this.started) {
      throw couldNot('BERTH_ERR_HOST_OP', 'observe', 'network', network.name, 'the observer is not started');
    }
    const old = this.networks.get(network.name);
    this.networks.set(network.name, network);
    if (old && old.netns !== network.netns) this.releaseNetns(old.netns);
    const shared = this.neigh.get(network.netns);
    // Another network on the same namespace may still be reading its first dump.
    if (shared) {
      await shared.ready.catch((err) => {
        this.networks.delete(network.name);
        throw err;
      });
      return;
    }
    const view = new NeighView(network.netns, (change) => this.changed(change));
    const ns = network.netns;
    const feed = this.feed(
      'neighbours of namespace',
      ns,
      ['ip', '-4', '-n', ns, 'monitor', 'neigh'],
      ['ip', '-4', '-n', ns, '-j', 'neigh', 'show'],
      {
        parseLine: parseNeighLine,
        parseDump: parseNeighDump,
        apply: (e) => view.apply(e),
        replace: (s) => view.replace(s),
      },
    );
    const ready = feed.start();
    this.neigh.set(ns, { view, feed, ready });
    try {
      await ready;
    } catch (err) {
      this.neigh.delete(ns);
      this.networks.delete(network.name);
      throw err;
    }
  }

  removeNetwork(name: string): void {
    const network = this.networks.get(name);
    if (!network) return;
    this.networks.delete(name);
    this.releaseNetns(network.netns);
  }

  onChange(listener: (change: ObserveChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Re-reads every table now; events keep flowing meanwhile. */
  async resync(): Promise<void> {
    await Promise.all([this.fdbFeed.resync(), ...[...this.neigh.values()].map((n) => n.feed.resync())]);
  }

  /** Answers from memory only: O(1) map lookups, no waiting. */
  resolveNow(network: string, srcIP: string): ResolveResult {
    const net = this.networks.get(network);
    if (!net) {
      throw new BerthError(
        'BERTH_ERR_NOT_FOUND',
        `could not resolve caller on network "${network}": the network is not observed`,
      );
    }
    const ip = plainIPv4(srcIP);
    const neighbour = this.neigh.get(net.netns)?.view.lookup(ip);
    const port = neighbour && this.fdb.lookup(net.bridge, neighbour.mac, net.vlan)?.port;
    return decideIp(network, ip, neighbour, port, this.opts.directory);
  }

  /** True when the bridges already carry mac: a pool must not hand it out. */
  macSeen(mac: string): boolean {
    return this.fdb.hasMac(mac);
  }

  /** Who owns mac, and is it on its own port? For DHCP, where the chaddr is the claim. */
  resolveMacNow(network: string, mac: string): ResolveResult {
    const net = this.networks.get(network);
    if (!net) {
      throw new BerthError(
        'BERTH_ERR_NOT_FOUND',
        `could not resolve MAC on network "${network}": the network is not observed`,
      );
    }
    return decideMac(network, mac, this.fdb.lookup(net.bridge, mac, net.vlan)?.port, this.opts.directory);
  }

  /**
   * Like resolveNow, but a guest that has just arrived gets a moment: its ARP
   * request reaches the kernel tables just before its first packet reaches us, and
   * the monitor event may trail it. Waits for events, never starts a process.
   */
  resolve(network: string, srcIP: string, options: { waitMs?: number } = {}): Promise<ResolveResult> {
    return this.settle(network, plainIPv4(srcIP), () => this.resolveNow(network, srcIP), options.waitMs);
  }

  /** resolveMacNow with the same short wait for a MAC the bridge is only now learning. */
  resolveMac(network: string, mac: string, options: { waitMs?: number } = {}): Promise<ResolveResult> {
    return this.settle(network, mac, () => this.resolveMacNow(network, mac), options.waitMs);
  }

  private settle(
    network: string,
    key: string,
    compute: () => ResolveResult,
    wait?: number,
  ): Promise<ResolveResult> {
    const first = compute();
    const waitMs = wait ?? this.o.missWaitMs;
    if (first.ok || !TRANSIENT_REASONS.has(first.reason) || waitMs <= 0 || !this.started) {
      return Promise.resolve(first);
    }
    return new Promise((resolve) => {
      const waiters = this.waiters.get(network) ?? new Set<Waiter>();
      this.waiters.set(network, waiters);
      const finish = (result: ResolveResult) => {
        clearTimeout(timer);
        waiters.delete(waiter);
        if (waiters.size === 0 && this.waiters.get(network) === waiters) this.waiters.delete(network);
        resolve(result);
      };
      const waiter: Waiter = {
        ip: key,
        check: () => {
          if (!this.networks.has(network)) return finish(first);
          const now = compute();
          if (now.ok || !TRANSIENT_REASONS.has(now.reason) || !this.started) finish(now);
        },
      };
      // No event in time: the monitor may trail a busy kernel or a busy
      // berthd. One full dump of the tables, shared by every caller missing
      // at that moment, settles it before the guest is refused.
      const timer = setTimeout(() => {
        if (!this.networks.has(network)) return finish(first);
        this.refreshFor(network)
          .catch(() => undefined)
          .then(() => finish(this.networks.has(network) ? compute() : first));
      }, waitMs);
      waiters.add(waiter);
    });
  }

  /** Dumps the FDB and the network's neighbours again (concurrent calls share the dumps). */
  private async refreshFor(network: string): Promise<void> {
    const net = this.networks.get(network);
    const neigh = net ? this.neigh.get(net.netns) : undefined;
    await Promise.all([this.fdbFeed.resync(), neigh?.feed.resync()]);
  }

  /** Sizes of the views, for status pages and tests. */
  stats(): { fdbEntries: number; neighbours: Record<string, number>; monitorsAlive: number } {
    const neighbours: Record<string, number> = {};
    let alive = this.fdbFeed.alive ? 1 : 0;
    for (const [ns, n] of this.neigh) {
      neighbours[ns] = n.view.size;
      if (n.feed.alive) alive++;
    }
    return { fdbEntries: this.fdb.size, neighbours, monitorsAlive: alive };
  }

  private releaseNetns(netns: string): void {
    for (const n of this.networks.values()) if (n.netns === netns) return;
    this.neigh.get(netns)?.feed.stop();
    this.neigh.delete(netns);
  }

  private changed(change: ObserveChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (err) {
        this.o.logger.error?.({ err }, 'observe: change listener threw');
      }
    }
    if (this.waiters.size === 0) return;
    for (const [name, set] of this.waiters) {
      const net = this.networks.get(name);
      const touches =
        net === undefined ||
        (change.kind === 'fdb' ? change.bridge === net.bridge : change.netns === net.netns);
      if (!touches) continue;
      for (const w of [...set]) if (change.kind === 'fdb' || w.ip === change.ip) w.check();
    }
  }

  private feed<E, S>(
    object: string,
    name: string,
    monitorArgv: string[],
    dumpArgv: string[],
    io: Pick<FeedOptions<E, S>, 'parseLine' | 'parseDump' | 'apply' | 'replace'>,
  ): Feed<E, S> {
    const { runner, spawner, logger, resyncMs, settleMs, backoff } = this.o;
    return new Feed<E, S>({
      object,
      name,
      monitorArgv,
      dumpArgv,
      ...io,
      runner,
      spawner,
      logger,
      resyncMs,
      settleMs,
      backoff,
    });
  }
}
