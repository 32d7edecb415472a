// Runs INSIDE a lab host (Debian's kernel, where nf_conntrack_bridge exists):
// security groups' bridge-ct path (`ct` in the bridge family, `ct zone set
// meta ibrname`) against real traffic, with berth's own driver from dist/.
// A bridge, an endpoint netns and four guest netns on veths; busybox nc for
// TCP (`-ll -e echo WORD` servers answer one word per connection, so a client
// that prints the word proves both directions), busybox ping for ICMP.
// Prints one JSON line per check ({"check": name, ...}); the test
// (secgroups-bridge-ct.test.ts) asserts on them. Plain JavaScript: node runs
// it as shipped, from /tmp, importing the project from /opt/berth/dist.
import { spawn } from 'node:child_process';

const DIST = process.argv[2] ?? '/opt/berth/dist';
const { osCommandRunner } = await import(`${DIST}/base/command.js`);
const { Names } = await import(`${DIST}/hostnet/names.js`);
const { NftSecGroupDriver } = await import(`${DIST}/hostnet/secgroups/nft-driver.js`);
const { sgTable, zoneOf } = await import(`${DIST}/hostnet/secgroups/render.js`);

const emit = (check, fields = {}) => console.log(JSON.stringify({ check, ...fields }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sh = (...argv) => osCommandRunner.run(argv, { timeoutMs: 30_000 });
const inNs = (ns, ...argv) => sh('ip', 'netns', 'exec', ns, ...argv);
const ok = (p) =>
  p.then(
    () => true,
    () => false,
  );
/** The bridge table's mid-stream pickup drops (a guarded port's segment that would start a flow). */
async function pickups() {
  const { stdout } = await sh('nft', '-j', 'list', 'counter', 'bridge', sgTable(names), 'pickup');
  return JSON.parse(stdout).nftables.find((o) => o.counter)?.counter.packets ?? -1;
}
const ms = (start) => Math.round(performance.now() - start);

const names = new Names('sc');
const NETWORK = 'sgct';
const bridge = names.bridge(NETWORK);
const endpoint = { ns: names.endpointNetns(NETWORK), port: names.endpointVeth(NETWORK), ip: '10.79.0.1' };
const guest = (id, n) => ({
  ns: names.guestNetns(`sg${id}`),
  port: names.port(id.repeat(8), 0),
  mac: `02:00:00:79:00:${n.toString(16).padStart(2, '0')}`,
  ip: `10.79.0.${n}`,
});
const DB = guest('d', 10);
const WEB = guest('w', 11);
const OTHER = guest('o', 12);
const WEB2 = guest('v', 13);
/** A second network with an overlapping subnet: a database and a webapp with DB's and WEB2's addresses. */
const bridge2 = names.bridge('sgct2');
const DBO = { ...guest('p', 10), mac: '02:00:00:79:01:10' };
const WEB2O = { ...guest('q', 13), mac: '02:00:00:79:01:13' };
const GUESTS = [DB, WEB, OTHER, WEB2];
/** A database and a webapp on a VLAN-filtering bridge, VLAN 100 (vlan_mode filtering). */
const vbridge = names.trunkBridge('sgct');
const DBV = guest('e', 20);
const WEBV = guest('x', 21);
/** VLAN 200 on the same trunk bridge, the same subnet: a guarded guest with WEBV's address, and DBV's address behind a tagged uplink. */
const G200 = { ...guest('g', 21), mac: '02:00:00:79:02:21' };
const A200 = { ...guest('a', 20), mac: '02:00:00:79:02:20' };

const SET = 's_web';
const rule = (id, port) => ({
  id,
  group: 'database',
  proto: 'tcp',
  ports: { from: port, to: port },
  from: { set: SET },
});
const MYSQL = rule('sr-mysql', 3306);
const SSH = rule('sr-ssh', 22);
/** A set member as the bridge sees it: address and MAC, on the guest's own port. */
const member = ({ ip, mac, port }) => ({ ip, mac, port });
const state = (guests, rules) => ({
  sets: [{ name: SET, source: 'role:webapp', members: guests.map(member) }],
  ports: [
    {
      ifname: DB.port,
      bridge,
      mac: DB.mac,
      ip: DB.ip,
      instance: 'db-1',
      endpointPorts: [endpoint.port],
      rules,
    },
    // The same address as DB, on another network's bridge (tenant subnets may overlap).
    {
      ifname: DBO.port,
      bridge: bridge2,
      mac: DBO.mac,
      ip: DBO.ip,
      instance: 'db-2',
      endpointPorts: [],
      rules,
    },
  ],
});

const children = new Set();
function start(ns, argv) {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    out += d;
  });
  return { child, out: () => out };
}
async function stop(p) {
  if (p.child.exitCode !== null) return;
  const gone = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGKILL');
  await gone;
}

/** Waits until something listens on tcp `port` in `ns` (busybox netstat). */
async function listening(ns, port) {
  for (let i = 0; i < 100; i++) {
    const { stdout } = await inNs(ns, 'netstat', '-ltn');
    if (stdout.includes(`:${port} `)) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on ${port} in ${ns}`);
}

/** A persistent server that answers every connection with one word. */
async function echoServer(ns, port, word) {
  const p = start(ns, ['nc', '-ll', '-p', String(port), '-e', 'echo', word]);
  await listening(ns, port);
  return p;
}

/** True when `from` connected to to:port and read the server's word (1 s connect timeout). */
async function opens(from, to, port, word) {
  try {
    const { stdout } = await inNs(from.ns, 'nc', '-w', '1', to.ip, String(port));
    return stdout.trim() === word;
  } catch {
    return false;
  }
}

const ping = (from, to) => ok(inNs(from.ns, 'ping', '-c', '1', '-W', '1', to.ip));

/** Polls until `from` gets in (or `limit` ms pass); resolves with the ms it took, or undefined. */
async function getsInWithin(from, to, port, word, limit) {
  const t0 = performance.now();
  while (performance.now() - t0 < limit) {
    if (await opens(from, to, port, word)) return ms(t0);
  }
  return undefined;
}

/** A held TCP connection: a one-shot `nc -l` on the server, `nc` on the client, both with stdio piped. */
async function hold(client, server, port) {
  const srv = start(server.ns, ['nc', '-l', '-p', String(port)]);
  await listening(server.ns, port);
  const cli = start(client.ns, ['nc', client === server ? '127.0.0.1' : server.ip, String(port)]);
  return { srv, cli };
}

/** Writes `word` on one side and reports whether the other side read it within `limit` ms. */
async function crosses(from, to, word, limit) {
  from.child.stdin.write(`${word}\n`);
  const t0 = performance.now();
  while (performance.now() - t0 < limit) {
    if (to.out().includes(word)) return true;
    await sleep(50);
  }
  return false;
}

/** The tracked TCP flows to port 3306 between these addresses, as conntrack prints them. */
async function tracked(a, b) {
  const { stdout } = await sh('conntrack', '-L', '-p', 'tcp', '--dport', '3306').catch((e) => ({
    stdout: e.stdout ?? '',
  }));
  return stdout.split('\n').filter((l) => l.includes(`src=${a.ip} dst=${b.ip}`));
}

async function plug(ns, port, mac, ip, master = bridge) {
  await sh('ip', 'netns', 'add', ns);
  await sh('ip', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  await sh('ip', 'link', 'set', port, 'master', master, 'up');
  await inNs(ns, 'ip', 'link', 'set', 'eth0', 'address', mac);
  await inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
  await inNs(ns, 'ip', 'link', 'set', 'eth0', 'up');
  await inNs(ns, 'ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0');
}

const driver = new NftSecGroupDriver(names);
try {
  const modules = (await sh('cat', '/proc/modules')).stdout;
  emit('modules', {
    loaded: [
      'nf_conntrack',
      'nf_conntrack_bridge',
      'nft_ct',
      'nft_meta_bridge',
      'nf_conntrack_netlink',
    ].filter((m) => modules.includes(`${m} `)),
  });

  await sh('ip', 'link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
  await sh('ip', 'link', 'set', bridge, 'up');
  await plug(endpoint.ns, endpoint.port, '02:00:00:79:00:01', endpoint.ip);
  for (const g of GUESTS) await plug(g.ns, g.port, g.mac, g.ip);
  await sh('ip', 'link', 'add', bridge2, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
  await sh('ip', 'link', 'set', bridge2, 'up');
  for (const g of [DBO, WEB2O]) await plug(g.ns, g.port, g.mac, g.ip, bridge2);

  let t0 = performance.now();
  const mode = await driver.mode().catch((e) => `error: ${e.message}`);
  emit('mode', { mode, ms: ms(t0) });
  if (mode !== 'bridge-ct') process.exit(0);

  // Before any group: the database is open to everyone.
  const servers = [
    await echoServer(DB.ns, 3306, 'db3306'),
    await echoServer(DB.ns, 22, 'db22'),
    await echoServer(OTHER.ns, 8080, 'other8080'),
  ];
  emit('before', { other3306: await opens(OTHER, DB, 3306, 'db3306') });

  t0 = performance.now();
  const first = await driver.apply(state([WEB], [MYSQL]));
  emit('apply', { changed: first.changed, errors: first.errors, ms: ms(t0) });
  const tables = (await sh('nft', 'list', 'tables')).stdout;
  emit('tables', {
    bridge: tables.includes(`table bridge ${sgTable(names)}`),
    inet: tables.includes('table inet'),
  });

  emit('traffic', {
    web3306: await opens(WEB, DB, 3306, 'db3306'),
    web22: await opens(WEB, DB, 22, 'db22'),
    other3306: await opens(OTHER, DB, 3306, 'db3306'),
    web2_3306: await opens(WEB2, DB, 3306, 'db3306'),
    dbToOther8080: await opens(DB, OTHER, 8080, 'other8080'),
    endpointPing: await ping(endpoint, DB),
    otherPing: await ping(OTHER, DB),
  });

  t0 = performance.now();
  const again = await driver.apply(state([WEB], [MYSQL]));
  const readBack = await driver.apply(state([WEB], [MYSQL]), { read: true });
  emit('idempotent', {
    changed: again.changed,
    readBackChanged: readBack.changed,
    errors: [...again.errors, ...readBack.errors],
    ms: ms(t0),
  });

  // A member joins the source set: an element update, and it gets in.
  t0 = performance.now();
  // WEB2O stands for WEB2 on the overlapping network: a member is bound to its own port, so it is an element of its own.
  const joined = await driver.apply(state([WEB, WEB2, WEB2O], [MYSQL]));
  const applyMs = ms(t0);
  const inMs = await getsInWithin(WEB2, DB, 3306, 'db3306', 5_000);
  emit('join', { changed: joined.changed, errors: joined.errors, applyMs, inMs });

  // WEB2 holds a connection, then leaves the set; its flows are cut.
  await stop(servers[0]);
  const held = await hold(WEB2, DB, 3306);
  const heldO = await hold(WEB2O, DBO, 3306);
  const heldBefore = {
    up: await crosses(held.cli, held.srv, 'up-1', 3_000),
    down: await crosses(held.srv, held.cli, 'down-1', 3_000),
    overlapUp: await crosses(heldO.cli, heldO.srv, 'up-1', 3_000),
  };
  const before = await tracked(WEB2, DB);
  t0 = performance.now();
  const left = await driver.apply(state([WEB], [MYSQL]));
  await driver.cutFlows([{ src: WEB2.ip, dst: DB.ip }]);
  const cutMs = ms(t0);
  const after = await tracked(WEB2, DB);
  emit('leave', {
    heldBefore,
    trackedBefore: before,
    zone: zoneOf(bridge),
    overlapZone: zoneOf(bridge2),
    changed: left.changed,
    errors: left.errors,
    cutMs,
    trackedAfterCut: after.length,
    // The server speaks first: a guarded port's mid-stream segment must not start a new flow.
    downAfter: await crosses(held.srv, held.cli, 'down-2', 3_000),
    upAfter: await crosses(held.cli, held.srv, 'up-2', 3_000),
    overlapUpAfter: await crosses(heldO.cli, heldO.srv, 'up-2', 3_000),
  });
  for (const p of [held.cli, held.srv, heldO.cli, heldO.srv]) await stop(p);
  servers[0] = await echoServer(DB.ns, 3306, 'db3306');
  emit('afterLeave', {
    web2_3306: await opens(WEB2, DB, 3306, 'db3306'),
    web3306: await opens(WEB, DB, 3306, 'db3306'),
  });

  // A rule removal: WEB's held connection stops, new ones are refused, the other rule keeps working.
  await stop(servers[0]);
  const held2 = await hold(WEB, DB, 3306);
  const held2Before = await crosses(held2.cli, held2.srv, 'up-1', 3_000);
  t0 = performance.now();
  let counters = await driver.counters();
  const mysqlCount = counters.find((c) => c.ifname === DB.port && c.rule === 'sr-mysql')?.packets ?? 0;
  const removed = await driver.apply(state([WEB], [SSH]));
  const removeMs = ms(t0);
  emit('ruleRemoved', {
    heldBefore: held2Before,
    changed: removed.changed,
    errors: removed.errors,
    ms: removeMs,
    upAfter: await crosses(held2.cli, held2.srv, 'up-2', 3_000),
  });
  await stop(held2.cli);
  await stop(held2.srv);
  servers[0] = await echoServer(DB.ns, 3306, 'db3306');
  emit('afterRuleRemoved', {
    web3306: await opens(WEB, DB, 3306, 'db3306'),
    web22: await opens(WEB, DB, 22, 'db22'),
  });

  const count = (rule) => counters.find((c) => c.ifname === DB.port && c.rule === rule)?.packets ?? 0;
  counters = await driver.counters();
  emit('counters', { mysql: mysqlCount, ssh: count('sr-ssh'), drop: count('drop'), pickup: await pickups() });

  // berth's vlan_mode filtering: one VLAN-filtering bridge, guest ports untagged members of their VLAN
  // (pvid). In the forward hook such a frame carries its VLAN as an offloaded tag.
  await sh('ip', 'link', 'add', vbridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
  await sh('ip', 'link', 'set', vbridge, 'type', 'bridge', 'vlan_filtering', '1', 'vlan_default_pvid', '0');
  await sh('ip', 'link', 'set', vbridge, 'up');
  for (const g of [DBV, WEBV]) {
    await plug(g.ns, g.port, g.mac, g.ip, vbridge);
    await sh('bridge', 'vlan', 'add', 'dev', g.port, 'vid', '100', 'pvid', 'untagged');
  }
  servers.push(await echoServer(DBV.ns, 3306, 'dbv3306'), await echoServer(DBV.ns, 22, 'dbv22'));
  const vOpenBefore = await opens(WEBV, DBV, 3306, 'dbv3306');
  const vApply = await driver.apply({
    sets: [{ name: SET, source: 'role:webapp', members: [WEB, WEBV].map(member) }],
    ports: [
      ...state([WEB], [SSH]).ports,
      {
        ifname: DBV.port,
        bridge: vbridge,
        mac: DBV.mac,
        ip: DBV.ip,
        instance: 'dbv-1',
        endpointPorts: [],
        rules: [MYSQL],
      },
    ],
  });
  emit('vlanFiltering', {
    openBefore: vOpenBefore,
    changed: vApply.changed,
    errors: vApply.errors,
    web3306: await opens(WEBV, DBV, 3306, 'dbv3306'),
    web22: await opens(WEBV, DBV, 22, 'dbv22'),
    web22flat: await opens(WEB, DB, 22, 'db22'),
    mysqlCounted:
      (await driver.counters()).find((c) => c.ifname === DBV.port && c.rule === 'sr-mysql')?.packets ?? 0,
  });

  // The cross-VLAN "reply" (overlapping subnets on one trunk bridge): VLAN 100's .21 (WEBV) sends
  // UDP 5353 -> .20:53 (DBV, DNS open); then VLAN 200's .20 (A200, behind a tagged uplink) sends
  // UDP 53 -> .21:5353 to G200, guarded, whose rules admit nothing from .20. Sharing one zone, the
  // second datagram is the first's reply; zoned per (bridge, VLAN) it is new, and dropped.
  await plug(G200.ns, G200.port, G200.mac, G200.ip, vbridge);
  await sh('bridge', 'vlan', 'add', 'dev', G200.port, 'vid', '200', 'pvid', 'untagged');
  await sh('ip', 'netns', 'add', A200.ns);
  await sh('ip', 'link', 'add', A200.port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', A200.ns);
  await sh('ip', 'link', 'set', A200.port, 'master', vbridge, 'up');
  await sh('bridge', 'vlan', 'add', 'dev', A200.port, 'vid', '200');
  await inNs(A200.ns, 'ip', 'link', 'set', 'eth0', 'up');
  await inNs(A200.ns, 'ip', 'link', 'add', 'link', 'eth0', 'name', 'eth0.200', 'type', 'vlan', 'id', '200');
  await inNs(A200.ns, 'ip', 'link', 'set', 'eth0.200', 'address', A200.mac, 'up');
  await inNs(A200.ns, 'ip', 'addr', 'add', `${A200.ip}/24`, 'dev', 'eth0.200');
  const DNS = {
    id: 'sr-dns',
    group: 'dns',
    proto: 'udp',
    ports: { from: 53, to: 53 },
    from: { cidr: '10.79.0.0/24' },
  };
  const vlanState = (zoned) => ({
    sets: [{ name: SET, source: 'role:webapp', members: [WEB, WEBV].map(member) }],
    ports: [
      ...state([WEB], [SSH]).ports,
      {
        ifname: DBV.port,
        bridge: vbridge,
        ...(zoned ? { vlan: 100 } : {}),
        mac: DBV.mac,
        ip: DBV.ip,
        instance: 'dbv-1',
        endpointPorts: [],
        rules: [MYSQL, DNS],
      },
      {
        ifname: G200.port,
        bridge: vbridge,
        ...(zoned ? { vlan: 200 } : {}),
        mac: G200.mac,
        ip: G200.ip,
        instance: 'g200-1',
        endpointPorts: [],
        rules: [MYSQL],
      },
    ],
  });
  const udpSend = (from, sport, to, dport, word) =>
    inNs(
      from.ns,
      'node',
      '-e',
      `const s=require('dgram').createSocket('udp4');s.bind(${sport},()=>s.send('${word}',${dport},'${to.ip}',()=>s.close()))`,
    );
  const receiver = start(G200.ns, [
    'node',
    '-e',
    "const s=require('dgram').createSocket('udp4');s.on('message',(m)=>console.log('got '+m));s.bind(5353,()=>console.log('bound'))",
  ]);
  for (let i = 0; i < 200 && !receiver.out().includes('bound'); i++) await sleep(100);
  const received = async (word) => {
    for (let i = 0; i < 30; i++) {
      if (receiver.out().includes(`got ${word}`)) return true;
      await sleep(100);
    }
    return false;
  };
  const udpTracked = async () => {
    const { stdout } = await sh('conntrack', '-L', '-p', 'udp').catch((e) => ({ stdout: e.stdout ?? '' }));
    return stdout.split('\n').filter((l) => l.includes('sport=5353') || l.includes('dport=5353'));
  };
  const inject = async (word) => {
    await udpSend(WEBV, 5353, DBV, 53, `trigger-${word}`);
    await sleep(300);
    await udpSend(A200, 53, G200, 5353, word);
    return received(word);
  };
  const bridgeZoned = await driver.apply(vlanState(false));
  const passedBridgeZoned = await inject('inject-1');
  const trackedBridgeZoned = await udpTracked();
  await sh('conntrack', '-F');
  const vlanZoned = await driver.apply(vlanState(true));
  const passedVlanZoned = await inject('inject-2');
  const trackedVlanZoned = await udpTracked();
  // G200's own query to A200 (behind the uplink) and its answer: the query is zoned by G200's pvid,
  // the answer (tagged 200 on the uplink) by its tag; only if both land in one zone is it a reply.
  const echo = start(A200.ns, [
    'node',
    '-e',
    "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(7,()=>console.log('bound'))",
  ]);
  for (let i = 0; i < 200 && !echo.out().includes('bound'); i++) await sleep(100);
  const answer = await inNs(
    G200.ns,
    'node',
    '-e',
    `const s=require('dgram').createSocket('udp4');s.on('message',(m)=>{console.log(String(m));process.exit(0)});s.send('ask-200',7,'${A200.ip}');setTimeout(()=>process.exit(1),3000)`,
  ).then(
    (r) => r.stdout.trim(),
    () => '',
  );
  const queryTracked = await sh('conntrack', '-L', '-p', 'udp', '--dport', '7').then(
    (r) => r.stdout.split('\n').filter((l) => l.includes('dport=7')),
    () => [],
  );
  await stop(echo);
  await driver.cutFlows([{ src: WEBV.ip, dst: DBV.ip }]);
  const afterCut = (await udpTracked()).filter((l) => l.includes(`src=${WEBV.ip} dst=${DBV.ip}`));
  emit('crossVlan', {
    bridgeZoned: {
      changed: bridgeZoned.changed,
      errors: bridgeZoned.errors,
      delivered: passedBridgeZoned,
      tracked: trackedBridgeZoned,
    },
    vlanZoned: {
      changed: vlanZoned.changed,
      errors: vlanZoned.errors,
      delivered: passedVlanZoned,
      tracked: trackedVlanZoned,
    },
    zone100: zoneOf(vbridge, 100),
    zone200: zoneOf(vbridge, 200),
    bridgeZone: zoneOf(vbridge),
    triggerTrackedAfterCut: afterCut.length,
    ownQueryAnswered: answer === 'ask-200',
    queryTracked,
    g200Drops:
      (await driver.counters()).find((c) => c.ifname === G200.port && c.rule === 'drop')?.packets ?? 0,
  });
  await stop(receiver);

  await driver.remove();
  const left2 = (await sh('nft', 'list', 'tables')).stdout;
  emit('removed', { tables: left2.includes(sgTable(names)) });
  emit('done');
} catch (err) {
  emit('error', { message: err instanceof Error ? err.stack : String(err) });
} finally {
  for (const c of children) c.kill('SIGKILL');
}
