// A LinkOps for one reconcile pass: the root namespace's links and the list
// of namespaces are read once, and a namespace's links once each, instead of
// one `ip` process per link looked at. With hundreds of guests that is the
// difference between one process per guest and five. Writes go straight to
// the real ops and make what they touched be read afresh, so logic on top
// sees its own changes exactly as it would without the snapshot.
import type { FdbInfo, LinkInfo, LinkOps, NeighbourInfo } from './link-ops.js';

const ROOT = '';

export class SnapshotLinkOps implements LinkOps {
  private netnsList: Promise<string[]> | undefined;
  private readonly listings = new Map<string, Promise<Map<string, LinkInfo>>>();
  /** Each endpoint's neighbours and each bridge's FDB, read once per pass; a write drops its listing. */
  private readonly neighbours = new Map<string, Promise<NeighbourInfo[]>>();
  private readonly fdbs = new Map<string, Promise<FdbInfo[]>>();
  /** Root links written since the root listing: read one by one from then on. */
  private readonly stale = new Set<string>();

  constructor(private readonly ops: LinkOps) {}

  private listing(netns: string | undefined): Promise<Map<string, LinkInfo>> {
    const key = netns ?? ROOT;
    let l = this.listings.get(key);
    if (!l) {
      l = this.ops.listLinks(netns).then((links) => new Map(links.map((x) => [x.name, x])));
      // A failed read is not remembered: the next caller asks the kernel again.
      l.catch(() => this.listings.delete(key));
      this.listings.set(key, l);
    }
    return l;
  }

  private touched(name: string, netns?: string): void {
    if (netns === undefined) this.stale.add(name);
    else this.listings.delete(netns);
  }

  /** Marks before (a read racing the write reads afresh) and after (a listing taken meanwhile is dropped). */
  private async write(targets: [string, string?][], fn: () => Promise<void>): Promise<void> {
    for (const [name, netns] of targets) this.touched(name, netns);
    try {
      await fn();
    } finally {
      for (const [name, netns] of targets) this.touched(name, netns);
    }
  }

  async listLinks(netns?: string): Promise<LinkInfo[]> {
    if (netns === undefined && this.stale.size > 0) return this.ops.listLinks();
    return [...(await this.listing(netns)).values()];
  }

  async getLink(name: string, netns?: string): Promise<LinkInfo | undefined> {
    if (netns === undefined && this.stale.has(name)) return this.ops.getLink(name);
    if (netns !== undefined && !(await this.listNetns()).includes(netns))
      return this.ops.getLink(name, netns);
    return (await this.listing(netns)).get(name);
  }

  listNetns(): Promise<string[]> {
    this.netnsList ??= this.ops.listNetns();
    this.netnsList.catch(() => {
      this.netnsList = undefined;
    });
    return this.netnsList;
  }

  async addNetns(name: string): Promise<void> {
    await this.ops.addNetns(name);
    this.netnsList = undefined;
    this.listings.delete(name);
  }

  async deleteNetns(name: string): Promise<void> {
    await this.ops.deleteNetns(name);
    this.netnsList = undefined;
    this.listings.delete(name);
  }

  ensureNetnsEtc(name: string): Promise<void> {
    return this.ops.ensureNetnsEtc(name);
  }

  listNetnsEtc(): Promise<string[]> {
    return this.ops.listNetnsEtc();
  }

  removeNetnsEtc(name: string): Promise<void> {
    return this.ops.removeNetnsEtc(name);
  }

  async createBridge(name: string, opts?: Parameters<LinkOps['createBridge']>[1]): Promise<void> {
    await this.write([[name]], () => this.ops.createBridge(name, opts));
  }

  async setBridgeOptions(name: string, options: Parameters<LinkOps['setBridgeOptions']>[1]): Promise<void> {
    await this.write([[name]], () => this.ops.setBridgeOptions(name, options));
  }

  async setLinkUp(name: string, netns?: string): Promise<void> {
    await this.write([[name, netns]], () => this.ops.setLinkUp(name, netns));
  }

  async setMaster(name: string, master: string): Promise<void> {
    await this.write([[name]], () => this.ops.setMaster(name, master));
  }

  async setNoMaster(name: string): Promise<void> {
    await this.write([[name]], () => this.ops.setNoMaster(name));
  }

  async setMac(name: string, mac: string, netns?: string): Promise<void> {
    await this.write([[name, netns]], () => this.ops.setMac(name, mac, netns));
  }

  async setMtu(name: string, mtu: number, netns?: string): Promise<void> {
    await this.write([[name, netns]], () => this.ops.setMtu(name, mtu, netns));
  }

  async createVeth(name: string, peer: string, opts?: Parameters<LinkOps['createVeth']>[2]): Promise<void> {
    await this.write([[name], [peer, opts?.peerNetns]], () => this.ops.createVeth(name, peer, opts));
  }

  async moveToNetns(name: string, netns: string, newName?: string): Promise<void> {
    await this.write([[name], [newName ?? name, netns]], () => this.ops.moveToNetns(name, netns, newName));
  }

  async deleteLink(name: string, netns?: string): Promise<void> {
    await this.write([[name, netns]], () => this.ops.deleteLink(name, netns));
  }

  async addAddress(name: string, cidr: string, netns?: string): Promise<void> {
    await this.write([[name, netns]], () => this.ops.addAddress(name, cidr, netns));
  }

  async deleteAddress(name: string, cidr: string, netns?: string): Promise<void> {
    await this.write([[name, netns]], () => this.ops.deleteAddress(name, cidr, netns));
  }

  listRoutes(netns?: string) {
    return this.ops.listRoutes(netns);
  }

  replaceDeviceRoute(dst: string, dev: string, netns?: string): Promise<void> {
    return this.ops.replaceDeviceRoute(dst, dev, netns);
  }

  execInNetns(netns: string, argv: string[], options?: { input?: string; timeoutMs?: number }) {
    return this.ops.execInNetns(netns, argv, options);
  }

  readSysctl(keys: string[], netns?: string): Promise<string[]> {
    return this.ops.readSysctl(keys, netns);
  }

  writeSysctl(values: Record<string, string>, netns?: string): Promise<void> {
    return this.ops.writeSysctl(values, netns);
  }

  listPortVlans(dev: string) {
    return this.ops.listPortVlans(dev);
  }

  async bridgeVlanAdd(
    dev: string,
    vid: number,
    flags?: Parameters<LinkOps['bridgeVlanAdd']>[2],
  ): Promise<void> {
    await this.ops.bridgeVlanAdd(dev, vid, flags);
  }

  async bridgeVlanDel(
    dev: string,
    vid: number,
    flags?: Parameters<LinkOps['bridgeVlanDel']>[2],
  ): Promise<void> {
    await this.ops.bridgeVlanDel(dev, vid, flags);
  }

  async createVlanSubinterface(uplink: string, name: string, vid: number): Promise<void> {
    await this.write([[name]], () => this.ops.createVlanSubinterface(uplink, name, vid));
  }

  listNeighbours(netns: string): Promise<NeighbourInfo[]> {
    return once(this.neighbours, netns, () => this.ops.listNeighbours(netns));
  }

  async pinNeighbour(ip: string, mac: string, dev: string, netns: string): Promise<void> {
    this.neighbours.delete(netns);
    await this.ops.pinNeighbour(ip, mac, dev, netns);
    this.neighbours.delete(netns);
  }

  async deleteNeighbour(ip: string, dev: string, netns: string): Promise<void> {
    this.neighbours.delete(netns);
    await this.ops.deleteNeighbour(ip, dev, netns);
    this.neighbours.delete(netns);
  }

  listFdb(bridge: string): Promise<FdbInfo[]> {
    return once(this.fdbs, bridge, () => this.ops.listFdb(bridge));
  }

  /** A port's entries live on its bridge, which this snapshot does not know: every FDB listing goes. */
  async pinFdb(mac: string, port: string, opts: { sticky: boolean; vlan?: number }): Promise<void> {
    this.fdbs.clear();
    await this.ops.pinFdb(mac, port, opts);
    this.fdbs.clear();
  }

  async deleteFdb(mac: string, port: string, vlan?: number): Promise<void> {
    this.fdbs.clear();
    await this.ops.deleteFdb(mac, port, vlan);
    this.fdbs.clear();
  }
}

/** One read per key; a failed read is not remembered. */
function once<T>(cache: Map<string, Promise<T>>, key: string, read: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (!p) {
    p = read();
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}
