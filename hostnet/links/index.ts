// HostLinks binds the link functions to one LinkOps and one owned prefix, so
// callers (network service, reconciler, netns runtime) hold a single object.
import { Names } from '../names.js';
import { type EnsureBridgeOptions, ensureBridge, removeBridge } from './bridge.js';
import { type EndpointSpec, ensureEndpoint, removeEndpoint } from './endpoint.js';
import { type FlatPlan, planFlatNetwork, releaseUplink } from './flat.js';
import { IpLinkOps } from './ip-link-ops.js';
import type { LinkInfo, LinkOps } from './link-ops.js';
import { ensureNetnsGuest, type NetnsGuestSpec, removeNetnsGuest } from './netns-guest.js';
import { applySteps } from './steps.js';
import { type Desired, listOwned, type OwnedObjects, type SweepResult, sweepOrphans } from './sweep.js';
import {
  applyVlanPlan,
  chooseVlanMode,
  detectVlanSupport,
  planVlanNetwork,
  setPortVlan,
  type VlanMode,
  type VlanModeSetting,
  type VlanPlan,
  type VlanSupport,
} from './vlan.js';

export * from './bridge.js';
export * from './endpoint.js';
export * from './flat.js';
export * from './link-ops.js';
export * from './netns-guest.js';
export * from './steps.js';
export * from './sweep.js';
export * from './vlan.js';

export class HostLinks {
  constructor(
    readonly names: Names = new Names(),
    readonly ops: LinkOps = new IpLinkOps(),
  ) {}

  ensureBridge(name: string, opts: EnsureBridgeOptions): Promise<LinkInfo> {
    return ensureBridge(this.ops, name, opts);
  }

  removeBridge(name: string): Promise<void> {
    return removeBridge(this.ops, name);
  }

  detectVlanSupport(): Promise<VlanSupport> {
    return detectVlanSupport(this.ops, this.names);
  }

  chooseVlanMode(setting: VlanModeSetting, support: VlanSupport, network: string): VlanMode {
    return chooseVlanMode(setting, support, network);
  }

  planVlanNetwork(
    mode: VlanMode,
    network: string,
    uplink: string,
    vid: number,
    opts?: { mtu?: number },
  ): VlanPlan {
    return planVlanNetwork(this.names, mode, network, uplink, vid, opts);
  }

  applyVlanPlan(plan: VlanPlan, support: VlanSupport): Promise<void> {
    return applyVlanPlan(this.ops, plan, support);
  }

  planFlatNetwork(network: string, uplink: string, opts?: { mtu?: number }): FlatPlan {
    return planFlatNetwork(this.names, network, uplink, opts);
  }

  applyFlatPlan(plan: FlatPlan): Promise<void> {
    return applySteps(this.ops, plan.steps);
  }

  releaseUplink(uplink: string, bridge: string): Promise<void> {
    return releaseUplink(this.ops, uplink, bridge);
  }

  setPortVlan(port: string, vid: number): Promise<void> {
    return setPortVlan(this.ops, port, vid);
  }

  ensureEndpoint(spec: EndpointSpec): Promise<void> {
    return ensureEndpoint(this.ops, spec);
  }

  removeEndpoint(spec: Pick<EndpointSpec, 'netns' | 'veth'>): Promise<void> {
    return removeEndpoint(this.ops, spec);
  }

  ensureNetnsGuest(spec: NetnsGuestSpec): Promise<void> {
    return ensureNetnsGuest(this.ops, spec);
  }

  removeNetnsGuest(spec: Pick<NetnsGuestSpec, 'netns' | 'port'>): Promise<void> {
    return removeNetnsGuest(this.ops, spec);
  }

  execInNetns(netns: string, argv: string[], options?: { input?: string; timeoutMs?: number }) {
    return this.ops.execInNetns(netns, argv, options);
  }

  listOwned(): Promise<OwnedObjects> {
    return listOwned(this.ops, this.names);
  }

  sweepOrphans(desired: Desired): Promise<SweepResult> {
    return sweepOrphans(this.ops, this.names, desired);
  }
}
