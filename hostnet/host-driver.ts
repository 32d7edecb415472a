// The real NetworkDriver: links (bridges, VLANs, endpoints, netns guests) and
// the nft guard, kept in step with berth's desired state. Every method is safe
// to call again; reconcile gathers failures instead of stopping at the first.
import { CommandError, type CommandRunner, osCommandRunner } from '../base/command.js';
import type {
  DesiredHostState,
  GuardDrop,
  GuardRestore,
  KernelFeatures,
  NetnsGuestSpec,
  NetworkDriver,
  NetworkPlacement,
  NetworkSpec,
  PortSpec,
} from './driver.js';
import { Guard } from './guard/guard.js';
import type { GuardEndpoint, GuardPort, GuardState } from './guard/render.js';
import { GuardWatch } from './guard/watch.js';
import type { Tamper } from './guard/watch-events.js';
import { parseCidr } from './ipv4.js';
import { type BindingWarn, type PortBinding, PortBindings } from './links/bindings.js';
import {
  checkUplinkName,
  findUplinkClash,
  HostLinks,
  type NetworkPlan,
  type UplinkUse,
  uplinkBridge,
  uplinkClashError,
  uplinkPortOf,
  type VlanModeSetting,
} from './links/index.js';
import { SnapshotLinkOps } from './links/snapshot-ops.js';
import type { Names } from './names.js';
import type { MonitorSpawner, ObserveLogger } from './observe/monitor.js';

/** Netns guests checked at once during reconcile. */
const GUEST_CHECKS_AT_ONCE = 6;
export interface HostDriverOptions {
  vlanMode?: VlanModeSetting;
  links?: HostLinks;
  guard?: Guard;
  runner?: CommandRunner;
  /** Told when a kernel feature is missing and berth falls back (sticky FDB entries). */
  warn?: BindingWarn;
  /** The guard watch's `nft monitor` child (tests feed lines by hand). */
  spawner?: MonitorSpawner;
}

export class HostDriver implements NetworkDriver {
  private readonly links: HostLinks;
  private readonly guard: Guard;
  private readonly runner: CommandRunner;
  private readonly vlanMode: VlanModeSetting;
  private support: Promise<KernelFeatures> | undefined;
  private readonly endpoints = new Map<string, GuardEndpoint>();
  private readonly ports = new Map<string, GuardPort>();
  /** The uplink plumbing of each realised network that has an uplink (VLAN or flat). */
  private readonly plans = new Map<string, NetworkPlan>();
  private readonly bindings: PortBindings;
  /** Every port berth guards, with what it was bound with: unguardPort gets only the name. */
  private readonly specs = new Map<string, PortSpec>();
  private watch: GuardWatch | undefined;
  private readonly spawner: MonitorSpawner | undefined;

  constructor(
    private readonly names: Names,
    options: HostDriverOptions = {},
  ) {
    this.links = options.links ?? new HostLinks(names);
    this.guard = options.guard ?? new Guard(names);
    this.runner = options.runner ?? osCommandRunner;
    this.vlanMode = options.vlanMode ?? 'auto';
    this.bindings = new PortBindings(this.links.ops, options.warn);
    this.spawner = options.spawner;
  }

  /**
   * Restores the guard table whenever something other than berth changes it
   * (guard/watch.ts), from the desired state this driver holds. Call after the
   * first reconcile; until then there is nothing to restore to.
   */
  watchGuard(logger: ObserveLogger = {}, onRestored?: (restore: GuardRestore) => void): void {
    this.watch ??= new GuardWatch({
      table: this.guard.table,
      ownTransaction: (pid) => this.guard.ownTransaction(pid),
      writing: () => this.guard.writing(),
      heal: (tamper) => this.healGuard(tamper, logger, onRestored),
      logger,
      ...(this.spawner ? { spawner: this.spawner } : {}),
    });
    this.watch.start();
  }

  stopWatching(): void {
    this.watch?.stop();
  }

  /** Waits for a heal in progress (tests and the benchmark). */
  async guardHealed(): Promise<void> {
    await this.watch?.idle();
  }

  private async healGuard(
    tamper: Tamper | undefined,
    logger: ObserveLogger,
    onRestored?: (restore: GuardRestore) => void,
  ): Promise<void> {
    if (!this.guard.applied) return;
    const started = Date.now();
    if (tamper) {
      const what =
        tamper.tableGone || tamper.whole
          ? "somebody deleted, flushed or changed berth's guard table; restoring"
          : `somebody changed the rules of ports ${tamper.ports.join(', ')} in berth's guard table; restoring`;
      logger.warn?.(
        {
          table: this.guard.table,
          by: { pid: tamper.pid, comm: tamper.comm },
          events: tamper.events,
          seen: tamper.seen,
        },
        what,
      );
    }
    // A table known gone is written whole without reading it first, and ports
    // whose chains or elements alone changed are rewritten without reading:
    // reading 200 ports' table back is most of a heal's time.
    const changed =
      tamper && !tamper.whole && tamper.ports.length > 0
        ? await this.guard.repairPorts(
            this.guardState(),
            tamper.ports.filter((p) => this.ports.has(p)),
          )
        : await this.applyGuard({ absent: tamper?.tableGone === true });
    if (tamper) {
      const ms = Date.now() - started;
      logger.info?.({ table: this.guard.table, ms, changed }, 'guard table restored');
      onRestored?.({
        tableGone: tamper.tableGone,
        ports: tamper.whole ? [] : tamper.ports,
        by: {
          ...(tamper.pid !== undefined ? { pid: tamper.pid } : {}),
          ...(tamper.comm ? { comm: tamper.comm } : {}),
        },
        ms,
        events: tamper.events,
      });
    } else if (changed)
      logger.warn?.(
        { table: this.guard.table, ms: Date.now() - started },
        'guard table differed while the watch was not subscribed; restored',
      );
  }

  features(): Promise<KernelFeatures> {
    this.support ??= this.links.detectVlanSupport();
    return this.support;
  }

  async checkVlanSupport(net: Pick<NetworkSpec, 'name'>): Promise<void> {
    this.links.chooseVlanMode(this.vlanMode, await this.features(), net.name);
  }

  /** The network's uplink plan: the one in use, or a new one (not yet in use). */
  private async planOf(net: NetworkSpec): Promise<NetworkPlan | undefined> {
    if (net.uplink === undefined) return undefined;
    const cached = this.plans.get(net.name);
    if (cached) return cached;
    if (net.vlan === undefined) return this.links.planFlatNetwork(net.name, net.uplink, { mtu: net.mtu });
    checkUplinkName(this.names, net.name, net.uplink);
    const mode = this.links.chooseVlanMode(this.vlanMode, await this.features(), net.name);
    return this.links.planVlanNetwork(mode, net.name, net.uplink, net.vlan, { mtu: net.mtu });
  }

  private static useOf(plan: NetworkPlan): UplinkUse {
    return { network: plan.network, uplink: plan.uplink, bridge: uplinkBridge(plan), mode: plan.mode };
  }

  async checkUplink(net: NetworkSpec, others: readonly NetworkSpec[]): Promise<void> {
    if (net.uplink === undefined) return;
    checkUplinkName(this.names, net.name, net.uplink);
    const use = async (n: NetworkSpec): Promise<UplinkUse | undefined> => {
      // A network this kernel cannot realise (a VLAN mode it lacks) holds no uplink.
      const plan = await this.planOf(n).catch(() => undefined);
      return plan && HostDriver.useOf(plan);
    };
    const mine = await use(net);
    if (!mine) return;
    const uses = (await Promise.all(others.map(use))).filter((u): u is UplinkUse => u !== undefined);
    const clash = findUplinkClash(mine, uses);
    if (clash) throw uplinkClashError(mine, clash);
  }

  placement(net: Pick<NetworkSpec, 'name' | 'vlan' | 'uplink'>): NetworkPlacement {
    const plan = this.plans.get(net.name);
    return {
      bridge: plan?.bridge ?? this.names.bridge(net.name),
      endpointNetns: this.names.endpointNetns(net.name),
      endpointVeth: this.names.endpointVeth(net.name),
      ...(plan?.portVid !== undefined ? { fdbVlan: plan.portVid } : {}),
      ...(plan ? { uplinkPort: uplinkPortOf(this.names, plan) } : {}),
    };
  }

  ensureNetwork(net: NetworkSpec): Promise<NetworkPlacement> {
    return this.realiseNetwork(net, false);
  }

  /** Refused before anything is touched: the uplink stays with the network that has it. */
  private claimUplink(plan: NetworkPlan): void {
    const mine = HostDriver.useOf(plan);
    const clash = findUplinkClash(mine, [...this.plans.values()].map(HostDriver.useOf));
    if (clash) throw uplinkClashError(mine, clash);
    this.plans.set(plan.network, plan);
  }

  /**
   * A create fails whole (the service rolls it back). Reconcile does not apply
   * the guard (it does that once, with every port known), and a flat network
   * whose uplink is missing or taken still gets its bridge and endpoint, so
   * its local guests keep DHCP and metadata; the uplink failure is reported
   * after, and the uplink joins on the first pass that finds it usable.
   */
  private async realiseNetwork(net: NetworkSpec, reconciling: boolean): Promise<NetworkPlacement> {
    const plan = await this.planOf(net);
    let uplinkFailure: unknown;
    if (plan?.mode === 'flat') {
      try {
        this.claimUplink(plan);
        await this.links.applyFlatPlan(plan);
      } catch (err) {
        if (!reconciling) throw err;
        uplinkFailure = err;
        await this.links.ensureBridge(plan.bridge, { mtu: net.mtu });
      }
    } else if (plan) {
      this.claimUplink(plan);
      await this.links.applyVlanPlan(plan, await this.features());
    } else await this.links.ensureBridge(this.names.bridge(net.name), { mtu: net.mtu });
    const place = this.placement(net);
    const cidr = parseCidr(net.subnet);
    await this.links.ensureEndpoint({
      network: net.name,
      bridge: place.bridge,
      netns: place.endpointNetns,
      veth: place.endpointVeth,
      serviceIp: net.serviceIp,
      prefixLen: cidr?.prefix ?? 24,
      mtu: net.mtu,
      ...(plan?.portVid !== undefined ? { vid: plan.portVid } : {}),
    });
    const endpoint = {
      network: net.name,
      bridge: place.bridge,
      ifname: place.endpointVeth,
      serviceIp: net.serviceIp,
    };
    const known = this.endpoints.get(net.name);
    this.endpoints.set(net.name, endpoint);
    const moved =
      !known ||
      known.bridge !== endpoint.bridge ||
      known.ifname !== endpoint.ifname ||
      known.serviceIp !== endpoint.serviceIp;
    if (!reconciling && moved) await this.applyGuard();
    if (uplinkFailure !== undefined) throw uplinkFailure;
    return place;
  }

  async removeNetwork(net: NetworkSpec): Promise<void> {
    const place = this.placement(net);
    await this.links.removeEndpoint({ netns: place.endpointNetns, veth: place.endpointVeth });
    this.endpoints.delete(net.name);
    await this.applyGuard();
    const plan = this.plans.get(net.name);
    // The uplink leaves the bridge but stays as it is otherwise: it is not berth's.
    // Only from this network's own bridge, so a refused create never touches it.
    if (net.uplink !== undefined && net.vlan === undefined)
      await this.links.releaseUplink(net.uplink, this.names.bridge(net.name));
    // A trunk bridge serves other VLANs too; the orphan sweep removes it once unused.
    if (plan?.mode !== 'filtering') await this.links.removeBridge(place.bridge);
    this.plans.delete(net.name);
  }

  private guardState(): GuardState {
    return { ports: [...this.ports.values()], endpoints: [...this.endpoints.values()] };
  }

  private applyGuard(options: { absent?: boolean } = {}): Promise<boolean> {
    return this.guard.apply(this.guardState(), options);
  }

  private guardPortOf(port: PortSpec): GuardPort {
    const bridge =
      [...this.endpoints.values()].find((e) => e.network === port.network)?.bridge ??
      this.names.bridge(port.network);
    return { ifname: port.ifname, mac: port.mac, ipv4: port.ip, network: port.network, bridge };
  }

  private bindingOf(port: PortSpec): PortBinding {
    const place = this.placement({ name: port.network });
    return {
      ifname: port.ifname,
      mac: port.mac,
      ip: port.ip,
      netns: place.endpointNetns,
      bridge: place.bridge,
      ...(place.fdbVlan !== undefined ? { vlan: place.fdbVlan } : {}),
    };
  }

  /** Guard first, then the neighbour entry: both exist before the port does. */
  async guardPort(port: PortSpec): Promise<void> {
    const g = this.guardPortOf(port);
    this.ports.set(port.ifname, g);
    this.specs.set(port.ifname, port);
    await this.guard.addPort(g);
    await this.bindings.pinNeighbour(this.bindingOf(port));
  }

  async unguardPort(ifname: string): Promise<void> {
    const spec = this.specs.get(ifname);
    const known = this.ports.get(ifname);
    this.ports.delete(ifname);
    this.specs.delete(ifname);
    const errors: unknown[] = [];
    if (spec) {
      const b = this.bindingOf(spec);
      // The port is usually gone already, and its FDB entries with it.
      await this.bindings.unpinFdb(b).catch((err) => errors.push(err));
      await this.bindings.unpinNeighbour(b).catch((err) => errors.push(err));
    }
    await this.guard.removePort(ifname, known);
    if (errors.length > 0) throw errors[0];
  }

  async bindPort(port: PortSpec): Promise<void> {
    await this.bindings.pinFdb(this.bindingOf(port));
  }

  async ensureNetnsGuest(guest: NetnsGuestSpec, net: NetworkSpec): Promise<void> {
    await this.plugNetnsGuest(guest, net, this.links);
    await this.bindPort(guest.port);
  }

  /** The guest's namespace and veth; reconcile pins every port's MAC in one pass afterwards. */
  private async plugNetnsGuest(guest: NetnsGuestSpec, net: NetworkSpec, links: HostLinks): Promise<void> {
    const plan = await this.planOf(net);
    await links.ensureNetnsGuest({
      netns: guest.netns,
      port: guest.port.ifname,
      bridge: this.placement(net).bridge,
      mac: guest.port.mac,
      mtu: net.mtu,
      ...(plan?.portVid !== undefined ? { vid: plan.portVid } : {}),
    });
  }

  async removeNetnsGuest(guest: NetnsGuestSpec): Promise<void> {
    await this.links.removeNetnsGuest({ netns: guest.netns, port: guest.port.ifname });
  }

  async execInNetns(
    netns: string,
    argv: string[],
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const r = await this.runner.run(['ip', 'netns', 'exec', netns, ...argv], { timeoutMs: 120_000 });
      return { code: 0, ...r };
    } catch (err) {
      if (err instanceof CommandError)
        return { code: err.exitCode ?? 1, stdout: err.stdout, stderr: err.stderr };
      throw err;
    }
  }

  async guardDrops(): Promise<GuardDrop[]> {
    return (await this.guard.drops()).map((d) => ({
      port: d.port,
      reason: d.reason,
      packets: d.packets,
      bytes: d.bytes,
    }));
  }

  async reconcile(desired: DesiredHostState): Promise<void> {
    const errors: Error[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        errors.push(
          new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }),
        );
      }
    };
    const byName = new Map(desired.networks.map((n) => [n.name, n]));
    for (const net of desired.networks)
      await attempt(`network ${net.name}`, () => this.realiseNetwork(net, true));
    this.ports.clear();
    for (const port of desired.ports) this.ports.set(port.ifname, this.guardPortOf(port));
    // Guard first: a netns guest recreated below must never exist unguarded.
    await attempt('guard', () => this.applyGuard());
    // One pass reads the root namespace once and each guest's namespace once
    // (SnapshotLinkOps). Guests are independent, so a few are checked at once:
    // that keeps both cores busy instead of waiting on one process at a time.
    const pass = new HostLinks(this.names, new SnapshotLinkOps(this.links.ops));
    const guests = [...desired.netnsGuests];
    const worker = async () => {
      for (let guest = guests.shift(); guest; guest = guests.shift()) {
        const net = byName.get(guest.port.network);
        const g = guest;
        if (net) await attempt(`netns guest ${g.netns}`, () => this.plugNetnsGuest(g, net, pass));
      }
    };
    await Promise.all(Array.from({ length: GUEST_CHECKS_AT_ONCE }, worker));
    this.specs.clear();
    for (const port of desired.ports) this.specs.set(port.ifname, port);
    await attempt('port bindings', async () => {
      const failed = await this.bindings.reconcile(
        {
          networks: desired.networks.map((n) => {
            const place = this.placement(n);
            return { netns: place.endpointNetns, bridge: place.bridge };
          }),
          bindings: desired.ports.filter((p) => byName.has(p.network)).map((p) => this.bindingOf(p)),
          ownsPort: (ifname) => ifname.startsWith(`${this.names.prefix}p`),
        },
        pass.ops,
      );
      if (failed.length > 0) throw new AggregateError(failed, failed.map((e) => e.message).join('; '));
    });
    const links = new Set<string>([...desired.ports.map((p) => p.ifname)]);
    const netns = new Set<string>(desired.netnsGuests.map((g) => g.netns));
    for (const net of desired.networks) {
      const place = this.placement(net);
      links.add(place.bridge).add(place.endpointVeth);
      netns.add(place.endpointNetns);
      for (const step of this.plans.get(net.name)?.steps ?? [])
        if (step.op === 'ensureVlanSubinterface') links.add(step.name);
    }
    await attempt('orphan sweep', () => pass.sweepOrphans({ links, netns }));
    if (errors.length > 0)
      throw new AggregateError(
        errors,
        `${errors.length} reconcile failure(s); first was: ${errors[0]?.message}`,
      );
  }
}
