// PortBindings over a recording LinkOps: desired vs observed for neighbour
// entries and FDB pins, and the sticky fallback that is never silent. The
// real kernel side is test/netns/hostnet-bindings.test.ts.
import t from 'tap';
import { CommandError, type CommandRunner } from '../../base/command.js';
import { BerthError } from '../../base/errors.js';
import { type PortBinding, PortBindings } from '../../hostnet/links/bindings.js';
import { IpLinkOps } from '../../hostnet/links/ip-link-ops.js';
import type { FdbInfo, LinkInfo, LinkOps, NeighbourInfo } from '../../hostnet/links/link-ops.js';

const A: PortBinding = {
  ifname: 'zzp1',
  mac: '02:00:00:00:00:01',
  ip: '10.9.0.1',
  netns: 'zz-ep-n',
  bridge: 'zzb',
};
const B: PortBinding = {
  ifname: 'zzp2',
  mac: '02:00:00:00:00:02',
  ip: '10.9.0.2',
  netns: 'zz-ep-n',
  bridge: 'zzb',
};

class FakeOps {
  calls: string[] = [];
  neigh: NeighbourInfo[] = [];
  fdb: FdbInfo[] = [];
  links = new Map<string, Partial<LinkInfo>>();
  refuseSticky = false;

  async listNeighbours() {
    return this.neigh;
  }
  async pinNeighbour(ip: string, mac: string, dev: string, netns: string) {
    this.calls.push(`pin neigh ${ip} ${mac} ${dev} ${netns}`);
  }
  async deleteNeighbour(ip: string) {
    this.calls.push(`del neigh ${ip}`);
  }
  async listFdb() {
    return this.fdb;
  }
  async pinFdb(mac: string, port: string, opts: { sticky: boolean }) {
    if (opts.sticky && this.refuseSticky)
      throw new BerthError('BERTH_ERR_KERNEL_FEATURE', 'could not pin FDB entry: sticky is a garbage');
    this.calls.push(`pin fdb ${mac} ${port}${opts.sticky ? ' sticky' : ''}`);
  }
  async deleteFdb(mac: string, port: string) {
    this.calls.push(`del fdb ${mac} ${port}`);
  }
  async getLink(name: string) {
    return this.links.get(name) as LinkInfo | undefined;
  }
}

const desired = (bindings: PortBinding[]) => ({
  networks: [{ netns: 'zz-ep-n', bridge: 'zzb' }],
  bindings,
  ownsPort: (p: string) => p.startsWith('zzp'),
});

function rig() {
  const ops = new FakeOps();
  const warned: string[] = [];
  const b = new PortBindings(ops as unknown as LinkOps, (_f, msg) => warned.push(msg));
  return { ops, warned, b };
}

t.test('reconcile: add missing, fix wrong, drop stale PERMANENT entries; learned ones stay', async (t) => {
  const { ops, b } = rig();
  ops.neigh = [
    { ip: A.ip, mac: '02:00:00:00:00:ee', dev: 'ep0', permanent: true },
    { ip: '10.9.0.99', mac: '02:00:00:00:00:99', dev: 'ep0', permanent: true },
    { ip: '10.9.0.98', mac: '02:00:00:00:00:98', dev: 'ep0', permanent: false },
    { ip: B.ip, mac: B.mac, dev: 'ep0', permanent: false },
  ];
  t.same(await b.reconcile(desired([A, B])), []);
  t.same(ops.calls, [
    `pin neigh ${A.ip} ${A.mac} ep0 zz-ep-n`,
    `pin neigh ${B.ip} ${B.mac} ep0 zz-ep-n`,
    'del neigh 10.9.0.99',
  ]);
});

t.test('reconcile: pins existing ports only; drops static entries on owned ports nobody wants', async (t) => {
  const { ops, b } = rig();
  ops.neigh = [
    { ip: A.ip, mac: A.mac, dev: 'ep0', permanent: true },
    { ip: B.ip, mac: B.mac, dev: 'ep0', permanent: true },
  ];
  ops.links.set(A.ifname, { master: 'zzb' });
  ops.fdb = [
    { mac: A.mac, port: 'veth9', bridge: 'zzb', static: false, sticky: false },
    { mac: '02:00:00:00:00:77', port: A.ifname, bridge: 'zzb', static: true, sticky: false },
    { mac: '02:00:00:00:00:78', port: 'veth9', bridge: 'zzb', static: true, sticky: false },
  ];
  t.same(await b.reconcile(desired([A, B])), []);
  t.same(ops.calls, [`pin fdb ${A.mac} ${A.ifname} sticky`, `del fdb 02:00:00:00:00:77 ${A.ifname}`]);
  // Everything in place: nothing is written.
  ops.calls = [];
  ops.fdb = [{ mac: A.mac, port: A.ifname, bridge: 'zzb', static: true, sticky: true }];
  t.same(await b.reconcile(desired([A, B])), []);
  t.same(ops.calls, []);
});

t.test('a kernel or iproute2 that refuses sticky: static pins, and one warning', async (t) => {
  const { ops, b, warned } = rig();
  ops.refuseSticky = true;
  await b.pinFdb(A);
  await b.pinFdb(B);
  t.same(ops.calls, [`pin fdb ${A.mac} ${A.ifname}`, `pin fdb ${B.mac} ${B.ifname}`]);
  t.equal(warned.length, 1, 'said once, not per port');
  t.match(warned[0], /refuses sticky FDB entries/);
  t.equal(b.stickySupported, false);
  // A static pin is then what reconcile wants.
  t.ok(b.isPinned({ port: A.ifname, static: true, sticky: false }, A));
  t.notOk(b.isPinned({ port: 'veth9', static: true, sticky: false }, A));
});

t.test('other failures are not mistaken for a missing feature', async (t) => {
  const { ops, b, warned } = rig();
  ops.pinFdb = async () => {
    throw new BerthError('BERTH_ERR_HOST_OP', 'could not pin FDB entry: Cannot find device');
  };
  await t.rejects(b.pinFdb(A), /Cannot find device/);
  t.same(warned, []);
  t.equal(b.stickySupported, undefined);
});

t.test('IpLinkOps names a refused sticky as BERTH_ERR_KERNEL_FEATURE', async (t) => {
  const argvs: string[][] = [];
  const refusing: CommandRunner = {
    async run(argv) {
      argvs.push(argv);
      throw new CommandError(argv, 255, 'Error: either "dev" is duplicate, or "sticky" is a garbage.');
    },
  };
  const err = await new IpLinkOps(refusing)
    .pinFdb(A.mac, A.ifname, { sticky: true, vlan: 7 })
    .catch((e) => e);
  t.ok(err instanceof BerthError && err.code === 'BERTH_ERR_KERNEL_FEATURE');
  t.same(argvs[0], [
    'bridge',
    'fdb',
    'replace',
    A.mac,
    'dev',
    A.ifname,
    'master',
    'static',
    'sticky',
    'vlan',
    '7',
  ]);
  const gone: CommandRunner = {
    async run(argv) {
      throw new CommandError(argv, 1, 'Cannot find device "zzp1"');
    },
  };
  const err2 = await new IpLinkOps(gone).pinFdb(A.mac, A.ifname, { sticky: true }).catch((e) => e);
  t.ok(err2 instanceof BerthError && err2.code === 'BERTH_ERR_HOST_OP');
  const neighArgv: string[][] = [];
  await new IpLinkOps({
    async run(argv) {
      neighArgv.push(argv);
      return { stdout: '', stderr: '' };
    },
  }).pinNeighbour(A.ip, A.mac, 'ep0', 'zz-ep-n');
  t.same(neighArgv[0], [
    'ip',
    '-n',
    'zz-ep-n',
    'neigh',
    'replace',
    A.ip,
    'lladdr',
    A.mac,
    'dev',
    'ep0',
    'nud',
    'permanent',
  ]);
});
