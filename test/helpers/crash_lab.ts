// A berthd to kill -9 and start again on the same state dir and socket, with
// one network, no quarantine (so "the pool is back where it started" is
// exact), and two bystander guests that must come through every crash
// untouched. Shared by test/faults/crash-*.test.ts.
import { join } from 'node:path';
import type { Test } from 'tap';
import type { PoolUsage } from '../../agent/api/types.js';
import { BerthClient } from '../../agent/client/client.js';
import { removePrefixed, tempDir, uniquePrefix } from './berthd.js';
import { startDhcpLab } from './dhcp_lab.js';
import { checkInvariants, checkStore, storeView } from './faults.js';
import { type Guest, ifindex, type Lab } from './hostnet_lab.js';

export const NETWORK = 'a';

export class CrashLab {
  private indexes: Record<string, number> = {};
  bystanders: Guest[] = [];
  pool0: PoolUsage | undefined;
  ips0: unknown;

  private constructor(
    private readonly t: Test,
    readonly where: { prefix: string; stateDir: string; socket: string },
    private readonly network: string,
    public lab: Lab,
  ) {}

  static async start(t: Test, third: number): Promise<CrashLab> {
    const prefix = uniquePrefix();
    t.teardown(() => removePrefixed(prefix));
    const base = await tempDir(t, 'crash');
    const where = { prefix, stateDir: join(base, 'state'), socket: join(base, 'berthd.sock') };
    const network = `{name: ${NETWORK}, subnet: 10.${third}.0.0/24}`;
    const c = new CrashLab(t, where, network, await CrashLab.launch(t, where, network));
    c.pool0 = await c.lab.d.client.pool();
    c.ips0 = (await c.lab.d.client.network(NETWORK)).ips;
    c.bystanders = await Promise.all([c.lab.guest('by1', NETWORK), c.lab.guest('by2', NETWORK)]);
    for (const g of c.bystanders) c.indexes[g.port] = await ifindex(g.port);
    t.ok(await c.lab.ping('by1', c.bystanders[1]?.ip as string), 'the bystanders talk before any crash');
    return c;
  }

  private static launch(t: Test, where: CrashLab['where'], network: string): Promise<Lab> {
    return startDhcpLab(t, [network], {
      ...where,
      extraConfig: 'quarantine: {mac_seconds: 0, ip_seconds: 0}\n',
    });
  }

  get client() {
    return this.lab.d.client;
  }

  /** For bursts: requests queue on berthd's host lock, so the default 5 s would cut them off first. */
  patientClient(): BerthClient {
    return new BerthClient(this.where.socket, 120_000);
  }

  /** A new berthd on the same state dir and socket (the old one must be gone). */
  async restart(): Promise<void> {
    this.lab = await CrashLab.launch(this.t, this.where, this.network);
  }

  /** SIGTERM, a look at the store, and a new berthd. */
  async checkStoreAtRest(t: Test): Promise<void> {
    t.equal(await this.lab.d.stop(), 0, 'berthd stops cleanly');
    checkStore(t, await storeView(this.where.stateDir));
    await this.restart();
  }

  /** The bystanders kept their ports (same ifindex), their state and their traffic. */
  async checkBystanders(t: Test): Promise<void> {
    for (const g of this.bystanders) {
      t.equal(await ifindex(g.port), this.indexes[g.port], `${g.name}'s port was never recreated`);
      t.equal((await this.client.instance(g.name)).state, 'running', `${g.name} is running`);
    }
    t.ok(await this.lab.ping('by1', this.bystanders[1]?.ip as string), 'the bystanders still talk');
  }

  /** Deletes every instance; the MAC pool and the network's IPs are back where they started. */
  async deleteAllAndCheck(t: Test): Promise<void> {
    for (const i of (await this.client.instances()).instances) await this.client.deleteInstance(i.name);
    await checkInvariants(t, this.client, this.where.prefix);
    t.same(await this.client.pool(), this.pool0, 'the MAC pool is back to its start');
    t.same((await this.client.network(NETWORK)).ips, this.ips0, "the network's IPs are back to their start");
    t.equal(await this.lab.d.stop(), 0);
    const view = await storeView(this.where.stateDir);
    t.same(
      { instances: view.instances, names: view.names, macs: view.macs, ips: view.ips, leases: view.leases },
      { instances: [], names: {}, macs: {}, ips: {}, leases: [] },
      'no record, reservation or lease is left in the store',
    );
  }
}
