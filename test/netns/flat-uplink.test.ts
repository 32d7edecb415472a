// A flat provider network through a real berthd and berthctl: `network create
// --uplink` without --vlan puts the uplink in the network's own bridge;
// show and list report it (text and --json); every refusal (missing uplink,
// another flat network's uplink, another bridge's port, berth's own port, an
// MTU the uplink cannot carry) names the field and leaves nothing behind; a
// restart's reconcile puts back an uplink someone took out of the bridge; and
// deleting the network releases the uplink without deleting or downing it.
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Network } from '../../agent/api/types.js';
import { Names } from '../../hostnet/names.js';
import { removePrefixed, tempDir, uniquePrefix } from '../helpers/berthd.js';
import { isRoot, type Lab, sh, startLab } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

interface LinkJson {
  ifname: string;
  master?: string;
  mtu: number;
  flags: string[];
}

async function link(name: string): Promise<LinkJson | undefined> {
  const out = await sh('ip', ['-j', 'link', 'show', 'dev', name]).catch(() => undefined);
  return out ? (JSON.parse(out) as LinkJson[])[0] : undefined;
}

/** A veth: the near end is the uplink, the far end eth0 of a namespace the orphan sweep does not own. */
async function uplink(t: Test, prefix: string, tag: string, mtu = 1500): Promise<string> {
  const near = `${prefix}xu${tag}`;
  const far = `${prefix}x-far${tag}`;
  t.teardown(async () => {
    await sh('ip', ['netns', 'delete', far]).catch(() => undefined);
    await sh('ip', ['link', 'delete', near]).catch(() => undefined);
  });
  await sh('ip', ['netns', 'add', far]);
  await sh('ip', [
    'link',
    'add',
    near,
    'mtu',
    String(mtu),
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    far,
  ]);
  return near;
}

async function ownedLinks(lab: Lab): Promise<string[]> {
  const names = new Names(lab.prefix);
  return (JSON.parse(await sh('ip', ['-j', 'link', 'show'])) as LinkJson[])
    .map((l) => l.ifname)
    .filter((n) => names.owns(n))
    .sort();
}

t.test('flat network with an uplink through berthd: create, report, refuse, reconcile, delete', async (t) => {
  const dir = await tempDir(t, 'flat-uplink');
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const where = { prefix, stateDir: join(dir, 'state'), socket: join(dir, 'berthd.sock') };
  const lab = await startLab(t, where);
  const names = new Names(prefix);
  const near = await uplink(t, prefix, '0');

  const created = await lab.json<Network>([
    'network',
    'create',
    'p',
    '--subnet',
    '10.83.0.0/24',
    '--uplink',
    near,
  ]);
  t.match(created, { name: 'p', uplink: near, vlan: null, bridge: names.bridge('p') });
  t.equal((await link(near))?.master, names.bridge('p'), 'the uplink is a port of the network bridge');
  t.ok((await link(near))?.flags.includes('UP'), 'and up');

  const shown = await lab.ctl(['network', 'show', 'p']);
  t.match(shown.stdout, new RegExp(`uplink\\s+${near} \\(flat, untagged\\)`), 'show names the uplink');
  t.match(shown.stdout, /^vlan\s+-$/m, 'and no VLAN');
  t.match(await lab.json<Network[]>(['network', 'list']), [{ name: 'p', uplink: near, vlan: null }]);
  const listed = await lab.ctl(['network', 'list']);
  t.match(listed.stdout, /UPLINK/);
  t.match(listed.stdout, new RegExp(`^p\\s+10\\.83\\.0\\.0/24\\s+.*${near}`, 'm'), 'list shows it too');

  // Refusals: each names its field, and leaves no record, link or namespace.
  const links = await ownedLinks(lab);
  const lan = `${prefix}xlan`;
  t.teardown(() => sh('ip', ['link', 'delete', lan]).catch(() => undefined));
  await sh('ip', ['link', 'add', lan, 'type', 'bridge']);
  const taken = await uplink(t, prefix, '1');
  await sh('ip', ['link', 'set', taken, 'master', lan]);
  const small = await uplink(t, prefix, '2', 1400);
  const refusals: [string, string[], { code: string; field: string; message: RegExp }][] = [
    [
      'missing uplink',
      ['--uplink', `${prefix}xnone`],
      {
        code: 'BERTH_ERR_INVALID_ARGUMENT',
        field: 'uplink',
        message: /does not exist on this host/,
      },
    ],
    [
      "another flat network's uplink",
      ['--uplink', near],
      { code: 'BERTH_ERR_CONFLICT', field: 'uplink', message: /is already used by flat network "p"/ },
    ],
    [
      "another bridge's port",
      ['--uplink', taken],
      {
        code: 'BERTH_ERR_CONFLICT',
        field: 'uplink',
        message: new RegExp(`is already a port of bridge "${lan}"`),
      },
    ],
    [
      "berth's own endpoint port",
      ['--uplink', names.endpointVeth('p')],
      { code: 'BERTH_ERR_INVALID_ARGUMENT', field: 'uplink', message: /is one of berth's own interfaces/ },
    ],
    [
      'an MTU the uplink cannot carry',
      ['--uplink', small],
      {
        code: 'BERTH_ERR_INVALID_ARGUMENT',
        field: 'mtu',
        message: /has MTU 1400, below the network's MTU 1500/,
      },
    ],
  ];
  for (const [what, flags, want] of refusals) {
    const r = await lab.ctl(['network', 'create', 'q', '--subnet', '10.84.0.0/24', ...flags, '--json']);
    t.equal(r.code, 1, `${what}: berthctl exits 1`);
    const body = JSON.parse(r.stdout) as { error: { code: string; field?: string; message: string } };
    t.match(
      body.error,
      {
        ...want,
        message: new RegExp(`^could not create network "q": uplink "[^"]+" ${want.message.source}`),
      },
      what,
    );
  }
  t.same(
    (await lab.json<Network[]>(['network', 'list'])).map((n) => n.name),
    ['p'],
    'no record for any refused network',
  );
  t.same(await ownedLinks(lab), links, 'no bridge or veth left by any refusal');
  t.equal((await link(taken))?.master, lan, "the other bridge's port stayed there");
  t.equal((await link(near))?.master, names.bridge('p'), '"p" kept its uplink');
  const { records } = await lab.d.client.audit({ limit: 10_000 });
  const audited = records.filter(
    (r) =>
      r.event === 'admin.request' && r.outcome === 'refused' && r.detail?.change === 'admin.network.create',
  );
  t.equal(audited.length, refusals.length, 'every refusal is audited');
  t.ok(
    audited.every((r) => /^could not create network "q": uplink /.test(r.reason ?? '')),
    'with its reason',
  );

  // Someone takes the uplink out; the reconcile of the next start puts it back.
  await sh('ip', ['link', 'set', near, 'nomaster']);
  t.equal(await lab.d.stop(), 0);
  const again = await startLab(t, where);
  t.equal((await link(near))?.master, names.bridge('p'), 'reconcile put the uplink back in the bridge');

  await again.json(['network', 'delete', 'p']);
  t.notOk(await link(names.bridge('p')), 'the bridge is gone');
  const after = await link(near);
  t.ok(after, 'the uplink still exists');
  t.equal(after?.master, undefined, 'out of the bridge');
  t.ok(after?.flags.includes('UP'), 'and still up');
});

t.test('a flat network from berthd.yaml gets its uplink at start', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const near = await uplink(t, prefix, 'c');
  const lab = await startLab(t, {
    prefix,
    config: `networks:\n  - {name: cfg, subnet: 10.85.0.0/24, uplink: ${near}}\n`,
  });
  t.match(await lab.show('cfg'), { uplink: near, vlan: null, source: 'config' });
  t.equal((await link(near))?.master, new Names(prefix).bridge('cfg'), 'the uplink is a port of its bridge');
});
