// Security groups' bridge-ct path, for real: this machine's kernel has no
// nf_conntrack_bridge (secgroups-traffic.test.ts takes the br-netfilter path
// here), Debian's stock kernel has it as a module. One lab host (QEMU TCG,
// Debian's kernel, the modules and the conntrack CLI from
// images/lab-host/build.sh) runs secgroups-bridge-ct-vm.mjs with the project's
// dist/: the NftSecGroupDriver must detect 'bridge-ct', and the seed's
// webapp → database:3306 example must hold against busybox nc.
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { buildInitrd, ensureLabHostImage, LabHost, makeWorkDir, Trunk } from './lab-host.js';

type Check = Record<string, unknown> & { check: string };

const VM_SCRIPT = new URL('./secgroups-bridge-ct-vm.mjs', import.meta.url);

t.setTimeout(600_000);
await t.test('security groups on the bridge-ct path (nf_conntrack_bridge)', async (t) => {
  const started = Date.now();
  const step = (what: string) => t.comment(`${what} at ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const image = await ensureLabHostImage();
  const work = await makeWorkDir();
  t.teardown(work.remove);
  const initrd = await buildInitrd(image, work.dir);
  // The VM needs a NIC to boot as the others do; nothing is sent on it.
  const trunk = await Trunk.create('lhsetr0', ['lhsetap0']);
  t.teardown(() => trunk.remove());
  const host = LabHost.boot({
    name: 'lhse',
    image,
    initrd,
    tap: 'lhsetap0',
    mac: '52:54:00:1a:00:5c',
    workDir: work.dir,
  });
  t.teardown(() => host.stop());
  await host.ready(240_000);
  step('lab host up');

  const script = Buffer.from(await readFile(VM_SCRIPT)).toString('base64');
  await host.must(`echo ${script} | base64 -d >/tmp/sg.mjs`);
  // --jitless as for berthd in the VM: under TCG compiling costs more than it saves.
  const r = await host.sh('NODE_OPTIONS=--jitless node /tmp/sg.mjs', 400_000);
  step('scenario done');
  const checks = new Map<string, Check>();
  for (const line of r.out.split('\n').filter((l) => l.startsWith('{'))) {
    const c = JSON.parse(line) as Check;
    checks.set(c.check, c);
  }
  const get = (name: string): Check => checks.get(name) ?? ({ check: name } as Check);
  t.equal(r.code, 0, 'the scenario script exited 0');
  t.notOk(checks.has('error'), 'the scenario raised no error', { error: get('error').message, out: r.out });
  t.comment(`VM results:\n${[...checks.values()].map((c) => JSON.stringify(c)).join('\n')}`);

  t.same(
    get('modules').loaded,
    ['nf_conntrack', 'nf_conntrack_bridge', 'nft_ct', 'nft_meta_bridge', 'nf_conntrack_netlink'],
    "Debian's kernel loaded conntrack for the bridge family, nft_ct, meta ibrname and ctnetlink",
  );
  t.equal(get('mode').mode, 'bridge-ct', 'NftSecGroupDriver detects the bridge-ct path');
  t.equal(get('before').other3306, true, 'before any group the database is open to everyone');

  const apply = get('apply');
  t.same([apply.changed, apply.errors], [true, []], 'the first apply changes the host, without errors');
  t.same(
    [get('tables').bridge, get('tables').inet],
    [true, false],
    'bridge-ct needs only the bridge table (no inet table, no br_netfilter)',
  );

  const traffic = get('traffic');
  t.equal(traffic.web3306, true, 'webapp → database:3306 is open');
  t.equal(traffic.web22, false, 'webapp → database:22 (no rule) is refused');
  t.equal(traffic.other3306, false, 'a guest outside the set → database:3306 is refused');
  t.equal(traffic.web2_3306, false, 'a webapp not yet in the set is refused');
  t.equal(traffic.dbToOther8080, true, "the reply to the database's own connection passes");
  t.equal(traffic.endpointPing, true, "the network's endpoint (DHCP, metadata) always gets through");
  t.equal(traffic.otherPing, false, 'ICMP from another guest (no rule) is refused');

  const idem = get('idempotent');
  t.same([idem.changed, idem.errors], [false, []], 'a second apply of the same state is a no-op');
  t.equal(idem.readBackChanged, false, 'the tables read back from the kernel match the desired state');

  const join = get('join');
  t.same([join.changed, join.errors], [true, []], 'adding a member is applied');
  t.ok(
    typeof join.inMs === 'number' && join.inMs < 1000,
    `a source that joins gets in within 1 s of the apply (${join.inMs} ms; apply ${join.applyMs} ms)`,
  );

  const leave = get('leave');
  t.same(
    leave.heldBefore,
    { up: true, down: true, overlapUp: true },
    'the held connections (and the one on the overlapping network) carried data',
  );
  const trackedBefore = (leave.trackedBefore as string[] | undefined) ?? [];
  t.ok(
    trackedBefore.some((l) => l.includes('ESTABLISHED') && l.includes(`zone=${leave.zone}`)),
    `conntrack tracked it in the bridge's own zone ${leave.zone}`,
    { tracked: trackedBefore },
  );
  t.ok(
    trackedBefore.some((l) => l.includes('ESTABLISHED') && l.includes(`zone=${leave.overlapZone}`)) &&
      leave.overlapZone !== leave.zone,
    `the same addresses on the overlapping network are tracked apart, in zone ${leave.overlapZone}`,
    { tracked: trackedBefore },
  );
  t.same([leave.changed, leave.errors], [true, []], 'removing the member is applied');
  t.equal(leave.trackedAfterCut, 0, "cutFlows deleted the removed member's tracked flows, in both zones");
  t.equal(leave.overlapUpAfter, false, "on the overlapping network, too, the removed address's data stops");
  t.equal(leave.downAfter, false, "after the cut the database's data no longer reaches the removed member");
  t.equal(leave.upAfter, false, "after the cut the removed member's data no longer reaches the database");
  t.equal(get('afterLeave').web2_3306, false, 'the removed member cannot open a new connection');
  t.equal(get('afterLeave').web3306, true, 'the remaining member still gets in');

  const removed = get('ruleRemoved');
  t.equal(removed.heldBefore, true, 'a connection held under the 3306 rule carried data');
  t.same([removed.changed, removed.errors], [true, []], 'replacing the 3306 rule by a 22 rule is applied');
  t.equal(removed.upAfter, false, 'the connection the removed rule allowed stops at once');
  t.equal(get('afterRuleRemoved').web3306, false, 'a new connection to 3306 is refused');
  t.equal(get('afterRuleRemoved').web22, true, 'the new rule (22) admits the webapp');

  const counters = get('counters');
  t.ok(Number(counters.mysql) > 0, `the 3306 rule counted packets (${counters.mysql})`);
  t.ok(Number(counters.ssh) > 0, `the 22 rule counted packets (${counters.ssh})`);
  t.ok(Number(counters.drop) > 0, `the port's drop counted packets (${counters.drop})`);
  t.ok(
    Number(counters.pickup) > 0,
    `the mid-stream pickup drop stopped the database's segments after the cut (${counters.pickup})`,
  );

  const vlan = get('vlanFiltering');
  t.equal(
    vlan.openBefore,
    true,
    'on a VLAN-filtering bridge (VLAN 100, pvid) the database is open before groups',
  );
  t.same([vlan.changed, vlan.errors], [true, []], "the VLAN bridge's database port is applied");
  t.equal(vlan.web3306, true, 'webapp → database:3306 is open on the VLAN-filtering bridge');
  t.equal(vlan.web22, false, 'webapp → database:22 (no rule) is refused on the VLAN-filtering bridge');
  t.ok(Number(vlan.mysqlCounted) > 0, `the VLAN port's 3306 rule counted packets (${vlan.mysqlCounted})`);
  t.equal(vlan.web22flat, true, "the flat bridge's port keeps its own rules");

  // Overlapping subnets in two VLANs of one trunk bridge: a UDP "reply" from the other VLAN.
  type Phase = { changed?: boolean; errors?: string[]; delivered?: boolean; tracked?: string[] };
  const cross = get('crossVlan');
  const byBridge = (cross.bridgeZoned ?? {}) as Phase;
  const byVlan = (cross.vlanZoned ?? {}) as Phase;
  t.same(byBridge.errors, [], 'the trunk ports applied zoned by bridge only (the old behaviour)');
  t.equal(
    byBridge.delivered,
    true,
    "zoned by bridge only, VLAN 200's .20 reaches the guarded .21:5353 as the 'reply' to VLAN 100's flow (the check can fail)",
    { tracked: byBridge.tracked },
  );
  t.same([byVlan.changed, byVlan.errors], [true, []], 'the ports with their VLANs are applied');
  t.equal(byVlan.delivered, false, "zoned per (bridge, VLAN), the cross-VLAN 'reply' is dropped", {
    tracked: byVlan.tracked,
  });
  const vlanTracked = byVlan.tracked ?? [];
  t.ok(
    vlanTracked.some((l) => l.includes('dport=53') && l.includes(`zone=${cross.zone100}`)) &&
      vlanTracked.every((l) => !l.includes(`zone=${cross.bridgeZone} `)),
    `VLAN 100's flow is tracked in its own zone ${cross.zone100} (untagged frames: pvid), none in the bridge's`,
    { tracked: vlanTracked },
  );
  t.ok(
    vlanTracked.some((l) => l.includes('dport=53 [UNREPLIED]')),
    "VLAN 100's flow stays unreplied: VLAN 200's datagram was not taken for its reply",
    { tracked: vlanTracked },
  );
  const queryTracked = (cross.queryTracked as string[] | undefined) ?? [];
  t.equal(
    cross.ownQueryAnswered,
    true,
    "VLAN 200's guarded guest gets the answer to its own query via the uplink",
  );
  t.ok(
    queryTracked.some((l) => l.includes(`zone=${cross.zone200}`) && !l.includes('UNREPLIED')),
    `the query (untagged, by pvid) and its answer (tagged, by tag) meet in VLAN 200's zone ${cross.zone200}`,
    { tracked: queryTracked },
  );
  t.ok(Number(cross.g200Drops) > 0, `the guarded VLAN 200 port's drop counted it (${cross.g200Drops})`);
  t.equal(cross.triggerTrackedAfterCut, 0, "cutFlows cut VLAN 100's flow in its VLAN's zone");
  t.equal(get('removed').tables, false, 'remove() deleted the tables');
  t.ok(checks.has('done'), 'the scenario ran to its end', { out: r.out });
  if (!t.passing()) t.comment(`--- console ---\n${await host.consoleTail(30)}`);
  step('done');
});
