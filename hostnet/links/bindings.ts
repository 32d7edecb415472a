// The kernel bindings identity is decided from, written by berth itself:
// - in each endpoint namespace, a PERMANENT neighbour entry assigned IP ->
//   assigned MAC per guest port. The endpoint never ARPs for a guest, its
//   replies can only go to the assigned MAC, and the kernel never replaces a
//   PERMANENT entry from ARP, whatever a guest or a foreign port sends;
// - in the root bridge FDB, a `static sticky` entry guest MAC -> its port once
//   the port exists. A frame with that MAC from any other port never moves it.
// The neighbour entry goes in with the guard, before the port exists; the FDB
// pin once the port does. Both are reconciled every pass.
import { BerthError } from '../../base/errors.js';
import { ENDPOINT_IFNAME } from './endpoint.js';
import type { FdbInfo, LinkOps } from './link-ops.js';

export interface PortBinding {
  /** The guest's bridge port. */
  ifname: string;
  mac: string;
  ip: string;
  /** The network's endpoint namespace, whose ep0 gets the neighbour entry. */
  netns: string;
  bridge: string;
  /** The FDB's VLAN on a VLAN-filtering trunk bridge. */
  vlan?: number;
}

export type BindingWarn = (fields: Record<string, unknown>, msg: string) => void;

export interface BindingsDesired {
  /** Every endpoint namespace and bridge of berth's networks, bound or not. */
  networks: { netns: string; bridge: string }[];
  bindings: PortBinding[];
  /** Guest ports berth owns, so stale pins on them can be told from others'. */
  ownsPort(ifname: string): boolean;
}

const fdbKey = (mac: string, vlan: number | undefined) => `${mac}|${vlan ?? ''}`;

export class PortBindings {
  /** Undefined until the first pin shows whether `sticky` is accepted. */
  private sticky: boolean | undefined;

  constructor(
    private readonly ops: LinkOps,
    private readonly warn: BindingWarn = () => {},
  ) {}

  /** Whether pins are sticky (false after the kernel or iproute2 refused it). */
  get stickySupported(): boolean | undefined {
    return this.sticky;
  }

  pinNeighbour(b: PortBinding, ops = this.ops): Promise<void> {
    return ops.pinNeighbour(b.ip, b.mac, ENDPOINT_IFNAME, b.netns);
  }

  async unpinNeighbour(b: PortBinding, ops = this.ops): Promise<void> {
    const have = (await ops.listNeighbours(b.netns).catch(() => [])).find((n) => n.ip === b.ip);
    // Only berth's own entry goes; the namespace may be gone already, which is fine.
    if (have?.permanent && have.mac === b.mac) await ops.deleteNeighbour(b.ip, ENDPOINT_IFNAME, b.netns);
  }

  /** Pins the port's MAC: sticky when possible, else static, said out loud once. */
  async pinFdb(b: PortBinding, ops = this.ops): Promise<void> {
    const vlan = b.vlan !== undefined ? { vlan: b.vlan } : {};
    if (this.sticky !== false) {
      try {
        await ops.pinFdb(b.mac, b.ifname, { sticky: true, ...vlan });
        this.sticky = true;
        return;
      } catch (err) {
        if (!(err instanceof BerthError && err.code === 'BERTH_ERR_KERNEL_FEATURE')) throw err;
        this.sticky = false;
        this.warn(
          { err: err.message },
          'the kernel or iproute2 refuses sticky FDB entries: guest MACs are pinned static, and a frame with a guest MAC from another port can move it until the guest speaks again',
        );
      }
    }
    await ops.pinFdb(b.mac, b.ifname, { sticky: false, ...vlan });
  }

  unpinFdb(b: PortBinding, ops = this.ops): Promise<void> {
    return ops.deleteFdb(b.mac, b.ifname, b.vlan);
  }

  /** Whether an FDB entry is the pin berth wants for b. */
  isPinned(e: Pick<FdbInfo, 'port' | 'static' | 'sticky'> | undefined, b: PortBinding): boolean {
    return e !== undefined && e.port === b.ifname && e.static && (e.sticky || this.sticky === false);
  }

  /**
   * Desired vs observed, add before delete, failures gathered. Neighbours: add
   * missing and fix wrong entries, then remove PERMANENT entries on ep0 for IPs
   * no longer assigned (only berth writes PERMANENT entries there). FDB: pin
   * each existing port's MAC, then drop static entries on owned guest ports
   * that no binding wants.
   */
  async reconcile(desired: BindingsDesired, ops: LinkOps = this.ops): Promise<Error[]> {
    const errors: Error[] = [];
    const attempt = async (fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        errors.push(err instanceof Error ? err : new Error(String(err)));
      }
    };
    const byNetns = groupBy(desired.bindings, (b) => b.netns);
    for (const { netns } of desired.networks) {
      await attempt(async () => {
        const want = byNetns.get(netns) ?? [];
        const have = new Map(
          (await ops.listNeighbours(netns)).filter((n) => n.dev === ENDPOINT_IFNAME).map((n) => [n.ip, n]),
        );
        for (const b of want) {
          const n = have.get(b.ip);
          if (!n?.permanent || n.mac !== b.mac) await attempt(() => this.pinNeighbour(b, ops));
        }
        const wanted = new Set(want.map((b) => b.ip));
        for (const n of have.values())
          if (n.permanent && !wanted.has(n.ip))
            await attempt(() => ops.deleteNeighbour(n.ip, ENDPOINT_IFNAME, netns));
      });
    }
    const byBridge = groupBy(desired.bindings, (b) => b.bridge);
    for (const bridge of new Set(desired.networks.map((n) => n.bridge))) {
      await attempt(async () => {
        const want = byBridge.get(bridge) ?? [];
        const entries = await ops.listFdb(bridge);
        const have = new Map(entries.map((e) => [fdbKey(e.mac, e.vlan), e]));
        for (const b of want) {
          if (this.isPinned(have.get(fdbKey(b.mac, b.vlan)), b)) continue;
          const port = await ops.getLink(b.ifname);
          // A tap libvirt has not made yet is pinned when it appears (an FDB event or the next pass).
          if (port?.master === bridge) await attempt(() => this.pinFdb(b, ops));
        }
        const wanted = new Set(want.map((b) => `${b.ifname}|${fdbKey(b.mac, b.vlan)}`));
        for (const e of entries) {
          if (!e.static || !desired.ownsPort(e.port)) continue;
          if (!wanted.has(`${e.port}|${fdbKey(e.mac, e.vlan)}`))
            await attempt(() => ops.deleteFdb(e.mac, e.port, e.vlan));
        }
      });
    }
    return errors;
  }
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}
