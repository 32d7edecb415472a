// A recording NetworkDriver for unit tests of the services. It fails on demand.

import { couldNot } from '../../base/errors.js';
import type {
  DesiredHostState,
  GuardDrop,
  KernelFeatures,
  NetnsGuestSpec,
  NetworkDriver,
  NetworkPlacement,
  NetworkSpec,
  PortSpec,
} from '../../hostnet/driver.js';
import {
  checkUplinkName,
  findUplinkClash,
  type UplinkUse,
  uplinkClashError,
} from '../../hostnet/links/flat.js';
import { Names } from '../../hostnet/names.js';

export class FakeDriver implements NetworkDriver {
  readonly calls: string[] = [];
  readonly guarded = new Set<string>();
  readonly guests = new Set<string>();
  readonly networks = new Set<string>();
  failOn = new Set<string>();
  featureSet: KernelFeatures = { dot1q: false, vlanFiltering: false };
  drops: GuardDrop[] = [];
  private readonly names = new Names('tst');

  private step(name: string): void {
    this.calls.push(name);
    const verb = name.split(' ')[0] as string;
    if (this.failOn.has(verb)) throw new Error(`${verb} failed on purpose`);
  }

  async features() {
    return this.featureSet;
  }
  async checkVlanSupport(net: Pick<NetworkSpec, 'name'>) {
    if (!this.featureSet.dot1q && !this.featureSet.vlanFiltering) {
      throw couldNot(
        'BERTH_ERR_KERNEL_FEATURE',
        'create',
        'VLAN network',
        net.name,
        'the kernel has neither "bridge vlan_filtering" nor "8021q"',
      );
    }
  }
  /** The real clash rule over the fake's view: flat claims its bridge, filtering-mode VLANs the trunk. */
  async checkUplink(net: NetworkSpec, others: readonly NetworkSpec[]) {
    const use = (n: NetworkSpec): UplinkUse | undefined => {
      if (n.uplink === undefined) return undefined;
      if (n.vlan === undefined)
        return { network: n.name, uplink: n.uplink, bridge: this.names.bridge(n.name), mode: 'flat' };
      return this.featureSet.vlanFiltering
        ? { network: n.name, uplink: n.uplink, bridge: this.names.trunkBridge(n.uplink), mode: 'filtering' }
        : { network: n.name, uplink: n.uplink, bridge: undefined, mode: 'subinterface' };
    };
    const mine = use(net);
    if (net.uplink !== undefined) checkUplinkName(this.names, net.name, net.uplink);
    const clash =
      mine &&
      findUplinkClash(
        mine,
        others.map(use).filter((u) => u !== undefined),
      );
    if (mine && clash) throw uplinkClashError(mine, clash);
  }
  placement(net: Pick<NetworkSpec, 'name'>): NetworkPlacement {
    return {
      bridge: this.names.bridge(net.name),
      endpointNetns: this.names.endpointNetns(net.name),
      endpointVeth: this.names.endpointVeth(net.name),
    };
  }
  async ensureNetwork(net: NetworkSpec) {
    this.step(`ensureNetwork ${net.name}`);
    this.networks.add(net.name);
    return this.placement(net);
  }
  async removeNetwork(net: NetworkSpec) {
    this.step(`removeNetwork ${net.name}`);
    this.networks.delete(net.name);
  }
  async guardPort(port: PortSpec) {
    this.step(`guardPort ${port.ifname}`);
    this.guarded.add(port.ifname);
  }
  async unguardPort(ifname: string) {
    this.step(`unguardPort ${ifname}`);
    this.guarded.delete(ifname);
  }
  async bindPort(port: PortSpec) {
    this.step(`bindPort ${port.ifname}`);
  }
  async ensureNetnsGuest(guest: NetnsGuestSpec) {
    this.step(`ensureNetnsGuest ${guest.netns}`);
    this.guests.add(guest.netns);
  }
  async removeNetnsGuest(guest: NetnsGuestSpec) {
    this.step(`removeNetnsGuest ${guest.netns}`);
    this.guests.delete(guest.netns);
  }
  watching = false;
  watchGuard() {
    this.watching = true;
  }
  stopWatching() {
    this.watching = false;
  }
  async execInNetns(netns: string, argv: string[]) {
    this.step(`exec ${netns} ${argv.join(' ')}`);
    return { code: 0, stdout: `${argv.join(' ')}\n`, stderr: '' };
  }
  async guardDrops() {
    return this.drops;
  }
  async reconcile(desired: DesiredHostState) {
    this.step(`reconcile ${desired.networks.length}/${desired.ports.length}/${desired.netnsGuests.length}`);
  }
}
