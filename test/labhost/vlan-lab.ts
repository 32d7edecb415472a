// berth's VLAN data path on a kernel that can tag, for one vlan_mode: two lab
// hosts (QEMU TCG, Debian's kernel with 8021q and the VLAN-filtering bridge)
// run the real berthd in cluster mode with VLAN networks 100 and 200 on eth0,
// joined by a plain bridge on this host as their trunk. Each VM runs one
// member of a two-member etcd cluster, on management VLAN 10 (lab-etcd.ts);
// both berthds hand out from one MAC pool, so the two VLAN 100 guests must get
// different MACs and addresses from etcd, not from hand-picked pools. A VLAN
// 100 guest on host A reaches the VLAN 100 guest on host B (and 200 reaches
// 200); a VLAN 200 guest routed at VLAN 100's subnet reaches nobody there; the
// trunk capture shows 802.1Q tags 100 and 200, etcd only on 10, and no DHCP
// (each guest is served by its own host). Each mode has its own VMs, trunk and
// etcd cluster, so the two test files can run side by side.
import type { Test } from 'tap';
import {
  berthdLogTail,
  createGuests,
  dhcp,
  hostMemory,
  LAB_MAC_POOL,
  type LabGuest,
  labConfig,
  prepareHost,
  startBerthd,
  type VlanMode,
  waitBerthdReady,
} from './berth-vm.js';
import {
  addManagementVlan,
  clientUrl,
  type EtcdPeer,
  etcdList,
  etcdLogTail,
  MGMT_VID,
  startEtcdMember,
  waitEtcdHealthy,
  waitEtcdKeys,
} from './lab-etcd.js';
import { buildInitrd, ensureLabHostImage, LabHost, makeWorkDir, Trunk } from './lab-host.js';
import { TrunkCapture } from './trunk-capture.js';

export interface LabNames {
  trunk: string;
  taps: [string, string];
  /** Last byte of the lab hosts' own (eth0) MACs. */
  macByte: [string, string];
}

/** What the mode must leave on a lab host's eth0: a tagged trunk port, or two tagged subinterfaces. */
async function checkShape(t: Test, host: LabHost, mode: VlanMode): Promise<void> {
  if (mode === 'filtering') {
    const out = await host.must('bridge -j vlan show dev eth0');
    const vids = (JSON.parse(out) as { vlans: { vlan: number; flags?: string[] }[] }[])
      .flatMap((p) => p.vlans)
      .filter((v) => !(v.flags ?? []).includes('Egress Untagged'))
      .map((v) => v.vlan);
    t.same(vids.sort(), [100, 200], `${host.name}: eth0 is a tagged member of VLANs 100 and 200`);
    return;
  }
  const out = await host.must('ip -j -d link show type vlan');
  const subs = (JSON.parse(out) as { link?: string; linkinfo: { info_data: { id: number } } }[])
    .map((l) => `${l.link}:${l.linkinfo.info_data.id}`)
    .filter((l) => l !== `eth0:${MGMT_VID}`); // the lab's management VLAN, not berth's
  t.same(subs.sort(), ['eth0:100', 'eth0:200'], `${host.name}: VLAN subinterfaces 100 and 200 on eth0`);
  t.notMatch(
    await host.must('ip -j link show dev eth0'),
    /"master"/,
    `${host.name}: eth0 itself is in no bridge`,
  );
}

async function ping(host: LabHost, from: LabGuest, to: string): Promise<{ ok: boolean; out: string }> {
  const r = await host.sh(`ip netns exec ${from.netns} ping -c 4 -W 3 ${to}`, 60_000);
  return { ok: r.code === 0, out: r.out };
}

export async function runVlanLab(t: Test, mode: VlanMode, names: LabNames): Promise<void> {
  const started = Date.now();
  const step = (what: string) =>
    t.comment(`${mode}: ${what} at ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const image = await ensureLabHostImage();
  const work = await makeWorkDir();
  t.teardown(work.remove);
  const initrd = await buildInitrd(image, work.dir);
  const trunk = await Trunk.create(names.trunk, names.taps);
  t.teardown(() => trunk.remove());
  const hosts = (['a', 'b'] as const).map((x, i) => {
    const host = LabHost.boot({
      name: `lh${x}-${mode.slice(0, 3)}`,
      image,
      initrd,
      tap: names.taps[i] as string,
      mac: `52:54:00:1a:00:${names.macByte[i]}`,
      workDir: work.dir,
    });
    t.teardown(() => host.stop());
    return host;
  }) as [LabHost, LabHost];
  const [hostA, hostB] = hosts;
  await Promise.all(hosts.map((h) => h.ready(240_000)));
  await Promise.all(hosts.map((h) => prepareHost(h)));
  step('lab hosts up');

  const peers = hosts.map((host, i) => ({ host, name: host.name, address: `192.168.10.${i + 1}` })) as [
    EtcdPeer,
    EtcdPeer,
  ];
  let finished = false;
  try {
    await Promise.all(peers.map((p) => addManagementVlan(p)));
    await Promise.all(peers.map((p) => startEtcdMember(p, peers, `lab-${mode}`)));
    await Promise.all(peers.map((p) => waitEtcdHealthy(p, 180_000)));
    step('etcd cluster healthy');

    // Host A starts first and declares the config's networks in etcd; host B
    // starts once they are there, and finds them rather than racing to declare.
    const config = (p: EtcdPeer) =>
      labConfig({ mode, hostId: p.name, address: p.address, etcd: peers.map(clientUrl) });
    await startBerthd(hostA, config(peers[0]));
    await waitEtcdKeys(hostA, 'network/', ['network/v100', 'network/v200'], 300_000);
    await startBerthd(hostB, config(peers[1]));
    await Promise.all(hosts.map((h) => waitBerthdReady(h, 480_000)));
    step('both berthds ready');
    for (const h of hosts) await checkShape(t, h, mode);

    const capture = await TrunkCapture.start(names.trunk);
    t.teardown(() => capture.stop());
    // Instance names are unique cluster-wide: each host's guests carry its letter.
    const wanted = (x: string) => [
      { name: `g100${x}`, network: 'v100' },
      { name: `g200${x}`, network: 'v200' },
    ];
    const [[a100, a200], [b100, b200]] = (await Promise.all(
      hosts.map((h, i) => createGuests(h, wanted(i === 0 ? 'a' : 'b'))),
    )) as [[LabGuest, LabGuest], [LabGuest, LabGuest]];
    step('guests created with berthctl');
    const all = [a100, a200, b100, b200];
    t.ok(
      all.every((g) => g.nic.mac.startsWith(LAB_MAC_POOL)),
      `both hosts hand out MACs from the one pool ${LAB_MAC_POOL}`,
    );
    t.equal(new Set(all.map((g) => g.nic.mac)).size, 4, 'the four guests have four different MACs');
    t.not(a100.nic.ip, b100.nic.ip, 'the VLAN 100 guests have different addresses');
    t.not(a200.nic.ip, b200.nic.ip, 'the VLAN 200 guests have different addresses');

    // The instance directory in etcd, read from host B: every guest of both
    // hosts, under its own host, with the MAC and address it was given.
    const directory = await etcdList<{ name: string; host: string; nics: { mac: string; ip: string }[] }>(
      hostB,
      'directory/',
    );
    const seen = directory.map(
      (d) => `${d.value.host}/${d.value.name} ${d.value.nics[0]?.mac} ${d.value.nics[0]?.ip}`,
    );
    const expected = [
      ...[a100, a200].map((g) => `${hostA.name}/${g.name} ${g.nic.mac} ${g.nic.ip}`),
      ...[b100, b200].map((g) => `${hostB.name}/${g.name} ${g.nic.mac} ${g.nic.ip}`),
    ];
    t.same(seen.sort(), expected.sort(), "etcd's instance directory holds both hosts' guests");
    const registered = await etcdList<{ id: string; address: string }>(hostB, 'host/');
    t.same(
      registered.map((h) => `${h.value.id} ${h.value.address}`).sort(),
      peers.map((p) => `${p.name} ${p.address}`),
      'both hosts are in the registry with their management addresses',
    );

    // Each guest asks berth's DHCP server on its own VLAN for its address.
    const leases = await Promise.all([
      (async () => [await dhcp(hostA, a100), await dhcp(hostA, a200)])(),
      (async () => [await dhcp(hostB, b100), await dhcp(hostB, b200)])(),
    ]);
    t.same(
      leases.flat(),
      [a100, a200, b100, b200].map((g) => `${g.nic.ip}/24`),
      'every guest leased its fixed address from its own host over DHCP on its VLAN',
    );
    step('DHCP done');

    const p100 = await ping(hostA, a100, b100.nic.ip);
    t.ok(p100.ok, `VLAN 100: ${a100.nic.ip} on ${hostA.name} reaches ${b100.nic.ip} on ${hostB.name}`, {
      out: p100.out,
    });
    const p200 = await ping(hostB, b200, a200.nic.ip);
    t.ok(p200.ok, `VLAN 200: ${b200.nic.ip} on ${hostB.name} reaches ${a200.nic.ip} on ${hostA.name}`, {
      out: p200.out,
    });

    // A VLAN 200 guest sends to VLAN 100's subnet as if it were on-link. Its
    // frames pass its guard (its own MAC and IP), leave tagged 200 and reach
    // only VLAN 200 on host B, where nobody answers for the VLAN 100 address.
    // (With a VLAN 100 address instead, its own guard would drop it first.)
    await hostA.must(`ip -n ${a200.netns} route add 10.100.0.0/24 dev eth0`);
    const cross = await ping(hostA, a200, b100.nic.ip);
    t.notOk(cross.ok, `VLAN 200 guest ${a200.nic.ip} cannot reach VLAN 100 guest ${b100.nic.ip}`, {
      out: cross.out,
    });
    const heard = await hostB.must(`ip -n ${b100.netns} neigh show ${a200.nic.ip}`);
    t.equal(heard.trim(), '', `${hostB.name}'s VLAN 100 guest never heard from ${a200.nic.ip}`);
    step('pings done');

    const lines = await capture.stop();
    const tagged = (vid: number) => lines.filter((l) => l.includes(`vlan ${vid},`));
    t.notOk(
      [...tagged(100), ...tagged(200)].some((l) => l.includes('BOOTP/DHCP')),
      'no DHCP frame crossed the trunk: each guest was served by its own host',
    );
    const mgmt = tagged(MGMT_VID);
    t.ok(
      mgmt.some((l) => /192\.168\.10\.\d\.2380 > /.test(l)),
      `etcd's peer traffic crossed the trunk tagged ${MGMT_VID} (${mgmt.length})`,
    );
    const guestIds = all.flatMap((g) => [g.nic.mac, `${g.nic.ip}.`, `${g.nic.ip}:`]);
    t.notOk(
      mgmt.some((l) => !/192\.168\.10\.[12]\b/.test(l) || guestIds.some((x) => l.includes(x))),
      `VLAN ${MGMT_VID} carried only the management addresses, nothing of berth's VLANs`,
    );
    t.ok(tagged(100).length > 0, `the trunk carries frames tagged 100 (${tagged(100).length})`);
    t.ok(tagged(200).length > 0, `the trunk carries frames tagged 200 (${tagged(200).length})`);
    t.ok(
      tagged(100).some((l) => l.includes(`> ${b100.nic.ip}: ICMP echo request`)),
      'the VLAN 100 echo requests crossed the trunk tagged 100',
    );
    t.ok(
      tagged(200).some((l) => l.includes(`> ${a200.nic.ip}: ICMP echo request`)),
      'the VLAN 200 echo requests crossed the trunk tagged 200',
    );
    t.ok(
      tagged(200).some((l) => l.includes(`who-has ${b100.nic.ip} tell ${a200.nic.ip}`)),
      `the cross-VLAN ARP for ${b100.nic.ip} crossed the trunk tagged 200`,
    );
    t.notOk(
      tagged(100).some((l) => l.includes(a200.nic.ip)) || tagged(200).some((l) => l.includes(a100.nic.ip)),
      'no frame of one VLAN carried the other tag',
    );
    t.notOk(
      lines.some((l) => l.includes(`Reply ${b100.nic.ip} is-at`) && l.includes('vlan 200,')),
      'nobody on VLAN 200 answered for the VLAN 100 address',
    );
    const sample = [...tagged(100), ...tagged(200)].filter((l) => /ICMP echo request/.test(l)).slice(0, 2);
    t.comment(`${mode}: trunk capture sample:\n${sample.join('\n')}`);
    finished = true;
  } finally {
    // A step that throws has not failed the test yet when this runs.
    for (const h of hosts) t.comment(`${h.name} memory:\n${await hostMemory(h)}`);
    if (!finished || !t.passing())
      for (const h of hosts)
        t.comment(
          `--- ${h.name} berthd log ---\n${await berthdLogTail(h)}\n--- etcd log ---\n${await etcdLogTail(h, 10)}\n--- console ---\n${await h.consoleTail(20)}`,
        );
  }
  step('done');
}
