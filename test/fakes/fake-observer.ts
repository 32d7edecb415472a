// A stand-in for the identity observer in unit tests of the services and API:
// it answers from a table the test fills instead of the kernel's FDB.
import type { Observer } from '../../agent/daemon/services.js';
import type { ResolveResult } from '../../hostnet/observe/resolve.js';

export class FakeObserver implements Observer {
  readonly byIp = new Map<string, ResolveResult>();
  readonly byMac = new Map<string, ResolveResult>();
  readonly networks = new Set<string>();
  readonly liveMacs = new Set<string>();
  macSeen(mac: string) {
    return this.liveMacs.has(mac);
  }
  async start() {}
  stop() {}
  async addNetwork(n: { name: string }) {
    this.networks.add(n.name);
  }
  removeNetwork(name: string) {
    this.networks.delete(name);
  }
  onChange() {
    return () => {};
  }
  resolveNow(network: string, ip: string): ResolveResult {
    return this.byIp.get(`${network}/${ip}`) ?? { ok: false, reason: 'no-neighbour' };
  }
  async resolve(network: string, ip: string) {
    return this.resolveNow(network, ip);
  }
  resolveMacNow(network: string, mac: string): ResolveResult {
    return this.byMac.get(`${network}/${mac}`) ?? { ok: false, reason: 'mac-not-on-port' };
  }
  async resolveMac(network: string, mac: string) {
    return this.resolveMacNow(network, mac);
  }
}
