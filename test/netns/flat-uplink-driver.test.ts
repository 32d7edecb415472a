// Root tier, HostDriver on the real kernel: a flat network with an uplink.
// The uplink (a veth whose far end sits in a namespace, as a NIC's cable
// would) becomes a port of the network's own bridge and comes up; a second
// pass writes nothing; an uplink someone took out of the bridge is put back by
// the next reconcile pass; refusals (missing, another bridge's port, too small
// an MTU, another flat network's uplink, berth's own port) leave nothing;
// removal takes the uplink out of the bridge and leaves it otherwise alone.
import { execFileSync } from 'node:child_process';
import t, { type Test } from 'tap';
import { type CommandRunner, osCommandRunner } from '../../base/command.js';
import type { NetworkSpec } from '../../hostnet/driver.js';
import { HostDriver } from '../../hostnet/host-driver.js';
import { HostLinks } from '../../hostnet/links/index.js';
import { IpLinkOps } from '../../hostnet/links/ip-link-ops.js';
import { Names } from '../../hostnet/names.js';
import { removePrefixed, uniquePrefix } from '../helpers/berthd.js';

if (process.getuid?.() !== 0) {
  t.fail('the netns tier runs as root');
  process.exit(1);
}

const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });

interface Link {
  ifname: string;
  master?: string;
  mtu: number;
  flags: string[];
  operstate: string;
}
function link(name: string): Link | undefined {
  try {
    return (JSON.parse(sh('ip', '-j', 'link', 'show', 'dev', name)) as Link[])[0];
  } catch {
    return undefined;
  }
}

/** The real runner, every argv that is not a read recorded. */
class Recording implements CommandRunner {
  writes: string[] = [];
  run(argv: string[], options?: Parameters<CommandRunner['run']>[1]) {
    const line = argv.join(' ');
    if (!/ -j |^ip netns exec|netns list/.test(line)) this.writes.push(line);
    return osCommandRunner.run(argv, options);
  }
}

/** A veth whose near end is the uplink and whose far end is eth0 of a namespace. */
function uplink(t: Test, prefix: string, tag: string, mtu = 1500): { near: string; far: string } {
  const near = `${prefix}xu${tag}`;
  const far = `${prefix}x-far${tag}`; // not `${prefix}-`: the orphan sweep owns those
  t.teardown(() => {
    for (const argv of [
      ['ip', 'link', 'delete', near],
      ['ip', 'netns', 'delete', far],
    ])
      try {
        execFileSync(argv[0] as string, argv.slice(1), { stdio: 'ignore' });
      } catch {}
  });
  sh('ip', 'netns', 'add', far);
  sh('ip', 'link', 'add', near, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', far);
  return { near, far };
}

t.test('a flat uplink: built, idempotent, repaired by reconcile, released on removal', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const names = new Names(prefix);
  const rec = new Recording();
  const driver = new HostDriver(names, { links: new HostLinks(names, new IpLinkOps(rec)) });
  // A jumbo uplink under a 1500 network: enslaving it must not raise the bridge's MTU.
  const { near } = uplink(t, prefix, 'a', 9000);
  t.equal(link(near)?.flags.includes('UP'), false, 'the uplink starts down');
  const net: NetworkSpec = {
    name: 'flat',
    subnet: '10.78.0.0/24',
    mtu: 1500,
    serviceIp: '10.78.0.254',
    uplink: near,
  };
  const place = await driver.ensureNetwork(net);
  t.equal(place.bridge, names.bridge('flat'), "the network's own bridge");
  t.equal(place.fdbVlan, undefined, 'untagged');
  t.equal(link(near)?.master, place.bridge, 'the uplink is a port of the bridge');
  t.ok(link(near)?.flags.includes('UP'), 'and up');
  t.equal(link(place.bridge)?.mtu, 1500, "the bridge keeps the network's MTU");
  t.equal(link(near)?.mtu, 9000, "the uplink's own MTU is untouched");

  rec.writes = [];
  await driver.ensureNetwork(net);
  t.same(rec.writes, [], 'a second ensure writes nothing');
  await driver.reconcile({ networks: [net], ports: [], netnsGuests: [] });
  t.same(
    rec.writes.filter((w) => w.startsWith('ip link')),
    [],
    'nor does a reconcile pass of the links',
  );

  sh('ip', 'link', 'set', near, 'nomaster');
  t.equal(link(near)?.master, undefined, 'someone took the uplink out of the bridge');
  rec.writes = [];
  await driver.reconcile({ networks: [net], ports: [], netnsGuests: [] });
  t.equal(link(near)?.master, place.bridge, 'the next reconcile pass put it back');
  t.same(
    rec.writes.filter((w) => w.startsWith('ip link')),
    [`ip link set ${near} master ${place.bridge}`],
    'writing only that',
  );

  await driver.removeNetwork(net);
  t.notOk(link(place.bridge), 'the bridge is gone');
  const after = link(near);
  t.ok(after, 'the uplink still exists');
  t.equal(after?.master, undefined, 'out of any bridge');
  t.ok(after?.flags.includes('UP'), 'and still up: berth never downs it');
  t.equal(after?.mtu, 9000);
});

t.test('refusals leave nothing, and never take an uplink from where it is', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const names = new Names(prefix);
  const driver = new HostDriver(names);
  const spec = (name: string, uplink: string, mtu = 1500): NetworkSpec => ({
    name,
    subnet: '10.79.0.0/24',
    mtu,
    serviceIp: '10.79.0.254',
    uplink,
  });
  const owned = () =>
    (JSON.parse(sh('ip', '-j', 'link', 'show')) as Link[])
      .map((l) => l.ifname)
      .filter((n) => names.owns(n))
      .sort();
  const before = owned();

  const refuse = async (
    what: string,
    net: NetworkSpec,
    want: { code: string; field?: string; message?: string | RegExp },
  ) => {
    await t.rejects(driver.ensureNetwork(net), want, what);
    await driver.removeNetwork(net); // what the network service does after a failed create
  };

  await refuse('missing', spec('m', `${prefix}xnone`), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'uplink',
    message: `could not create network "m": uplink "${prefix}xnone" does not exist on this host`,
  });

  const { near: taken } = uplink(t, prefix, 'b');
  const lan = `${prefix}xlan`;
  t.teardown(() => {
    try {
      execFileSync('ip', ['link', 'delete', lan], { stdio: 'ignore' });
    } catch {}
  });
  sh('ip', 'link', 'add', lan, 'type', 'bridge');
  sh('ip', 'link', 'set', taken, 'master', lan);
  await refuse("another bridge's port", spec('o', taken), {
    code: 'BERTH_ERR_CONFLICT',
    field: 'uplink',
    message: new RegExp(`uplink "${taken}" is already a port of bridge "${lan}"`),
  });
  t.equal(link(taken)?.master, lan, 'the uplink stays where it was, also after the rollback');

  const { near: small } = uplink(t, prefix, 'c', 1400);
  await refuse('MTU', spec('s', small, 1500), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'mtu',
    message: new RegExp(`uplink "${small}" has MTU 1400, below the network's MTU 1500`),
  });
  t.equal(link(small)?.master, undefined);

  await refuse("berth's own port", spec('e', names.endpointVeth('x')), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'uplink',
  });
  t.same(owned(), before, 'no bridge, veth or namespace was left by any refusal');

  // Two flat networks on one uplink: the second is refused, the first keeps it.
  const { near: shared } = uplink(t, prefix, 'd');
  await driver.ensureNetwork({ ...spec('one', shared), subnet: '10.80.0.0/24', serviceIp: '10.80.0.254' });
  await t.rejects(
    driver.ensureNetwork({ ...spec('two', shared), subnet: '10.81.0.0/24', serviceIp: '10.81.0.254' }),
    {
      code: 'BERTH_ERR_CONFLICT',
      field: 'uplink',
      message: new RegExp(`uplink "${shared}" is already used by flat network "one"`),
    },
  );
  await driver.removeNetwork({ ...spec('two', shared), subnet: '10.81.0.0/24', serviceIp: '10.81.0.254' });
  t.equal(link(shared)?.master, names.bridge('one'), 'the rollback of "two" left "one"\'s uplink alone');
  t.notOk(link(names.bridge('two')), 'and no bridge for "two"');
  await driver.removeNetwork({ ...spec('one', shared), subnet: '10.80.0.0/24', serviceIp: '10.80.0.254' });
  t.equal(link(shared)?.master, undefined);
});

t.test(
  'reconcile: a missing uplink still leaves the network served locally, and joins when it appears',
  async (t) => {
    const prefix = uniquePrefix();
    t.teardown(() => removePrefixed(prefix));
    const names = new Names(prefix);
    const driver = new HostDriver(names);
    const near = `${prefix}xue`;
    const net: NetworkSpec = {
      name: 'late',
      subnet: '10.82.0.0/24',
      mtu: 1500,
      serviceIp: '10.82.0.254',
      uplink: near,
    };
    const desired = { networks: [net], ports: [], netnsGuests: [] };
    await t.rejects(driver.reconcile(desired), {
      message: new RegExp(`network late: could not create network "late": uplink "${near}" does not exist`),
    });
    t.ok(link(names.bridge('late')), 'the bridge exists anyway');
    t.ok(link(names.endpointVeth('late')), 'and so does the endpoint, for the local guests');
    uplink(t, prefix, 'e');
    await driver.reconcile(desired);
    t.equal(link(near)?.master, names.bridge('late'), 'the uplink joined on the pass that found it');
  },
);
