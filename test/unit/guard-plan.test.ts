// Reconcile as transactions: what Guard sends to nft for add, remove, change
// and no-op, against listings shaped like `nft -j list table` output.
import t from 'tap';
import { CommandError, type CommandRunner } from '../../base/command.js';
import { fingerprintOfRules } from '../../hostnet/guard/fingerprint.js';
import { Guard } from '../../hostnet/guard/guard.js';
import { CommandNftApplier, type NftApplier } from '../../hostnet/guard/nft.js';
import { handlesOf, observeGuard } from '../../hostnet/guard/observe.js';
import {
  addPortCommands,
  counterName,
  DROP_REASONS,
  EDGE_REASONS,
  type GuardPort,
  type GuardState,
  portCommands,
  portFingerprint,
  renderGuard,
  skeletonFingerprint,
  TABLE_COUNTERS,
} from '../../hostnet/guard/render.js';
import {
  addEndpointCommands,
  edgeRules,
  endpointRules,
  portEdgeCommands,
} from '../../hostnet/guard/render-edges.js';
import { Names } from '../../hostnet/names.js';

const names = new Names('ga');
const T = 'bridge ga_guard';
const A: GuardPort = {
  ifname: 'gapa',
  mac: '02:00:00:00:00:0a',
  ipv4: '10.9.0.10',
  network: 'n1',
  bridge: 'gab1',
};
const B: GuardPort = {
  ifname: 'gapb',
  mac: '02:00:00:00:00:0b',
  ipv4: '10.9.0.11',
  network: 'n1',
  bridge: 'gab1',
};
const EP = { network: 'n1', bridge: 'gab1', ifname: 'gae1', serviceIp: '10.9.0.254' };
const both: GuardState = { ports: [A, B], endpoints: [EP] };

/** A listing of the table as nft -j prints it after `state` was applied. */
function listing(state: GuardState, skeleton = skeletonFingerprint(names), packets = 0): unknown {
  let handle = 1;
  const items: object[] = [
    { metainfo: { version: '1.0.6' } },
    { table: { family: 'bridge', name: 'ga_guard', handle } },
  ];
  const counter = (name: string) => ({
    counter: { name, table: 'ga_guard', handle: ++handle, packets, bytes: packets * 60 },
  });
  items.push(...TABLE_COUNTERS.map(counter));
  for (const p of state.ports) items.push(...DROP_REASONS.map((r) => counter(counterName(p.ifname, r))));
  for (const e of state.endpoints) items.push(...EDGE_REASONS.map((r) => counter(`${e.ifname}.${r}`)));
  const map = (name: string, elem: unknown[]) => ({
    map: { name, handle: ++handle, ...(elem.length ? { elem } : {}) },
  });
  const set = (name: string, elem: unknown[]) => ({
    set: { name, handle: ++handle, ...(elem.length ? { elem } : {}) },
  });
  const epOf = (p: GuardPort) => state.endpoints.find((e) => e.network === p.network);
  items.push(
    map(
      'ports',
      state.ports.map((p) => [p.ifname, { jump: { target: `port_${p.ifname}` } }]),
    ),
  );
  items.push(
    map(
      'endpoints',
      state.endpoints.map((e) => [e.ifname, { jump: { target: `ep_${e.ifname}` } }]),
    ),
  );
  const edged = state.ports.filter((p) => epOf(p));
  items.push(
    map(
      'edges',
      edged.map((p) => [p.ifname, { jump: { target: `edge_${epOf(p)?.ifname}` } }]),
    ),
  );
  items.push(
    set(
      'dhcp_paths',
      edged.map((p) => ({ concat: [p.ifname, epOf(p)?.ifname] })),
    ),
  );
  const replies = state.ports.map((p) => ({
    concat: [p.ifname, Number.parseInt(p.mac.replaceAll(':', ''), 16)],
  }));
  items.push(set('dhcp_replies', replies));
  for (const e of state.endpoints) {
    const mine = edged.filter((p) => epOf(p) === e);
    items.push(
      set(
        `hosts_${e.ifname}`,
        mine.map((p) => ({ concat: [p.ifname, p.mac] })),
      ),
    );
    const addrs = mine.flatMap((p) => [
      { concat: [p.ifname, p.mac, '0.0.0.0'] },
      { concat: [p.ifname, p.mac, p.ipv4] },
    ]);
    items.push(set(`addrs_${e.ifname}`, addrs));
    items.push(
      set(
        `macs_${e.ifname}`,
        mine.map((p) => p.mac),
      ),
    );
    items.push(
      set(
        `ips_${e.ifname}`,
        mine.map((p) => p.ipv4),
      ),
    );
  }
  const chains = [
    'prerouting',
    'forward',
    ...state.ports.map((p) => `port_${p.ifname}`),
    ...state.endpoints.flatMap((e) => [`ep_${e.ifname}`, `edge_${e.ifname}`]),
  ];
  for (const c of chains) items.push({ chain: { table: 'ga_guard', name: c, handle: ++handle } });
  items.push({
    rule: { chain: 'prerouting', handle: ++handle, comment: `berth guard ${skeleton}`, expr: [] },
  });
  const fingerprinted = (chain: string, print: string) => {
    items.push({ rule: { chain, handle: ++handle, expr: [] } });
    items.push({ rule: { chain, handle: ++handle, comment: `berth guard ${print}` } });
  };
  for (const p of state.ports) fingerprinted(`port_${p.ifname}`, portFingerprint(p));
  for (const e of state.endpoints) {
    fingerprinted(`ep_${e.ifname}`, fingerprintOfRules(endpointRules(e)));
    fingerprinted(`edge_${e.ifname}`, fingerprintOfRules(edgeRules(e)));
  }
  return { nftables: items };
}

class RecordingNft implements NftApplier {
  readonly scripts: string[] = [];
  /** Whole-table listings read, the cost the one-port path avoids. */
  tableReads = 0;
  constructor(public table: unknown) {}
  async run(script: string): Promise<void> {
    this.scripts.push(script);
  }
  async listTable(): Promise<unknown> {
    this.tableReads += 1;
    return this.table;
  }
  /** Every small listing read, by what was asked for. */
  readonly listed: string[] = [];
  /** `chains bridge`, or one map or set by name, cut from the table listing. */
  async list(what: string[]): Promise<unknown> {
    this.listed.push(what.join(' '));
    const items = (this.table as { nftables?: Record<string, { name?: string }>[] } | undefined)?.nftables;
    if (!items) return what[0] === 'chains' ? { nftables: [] } : undefined;
    const [kind, , , name] = what as [string, string, string?, string?];
    if (kind === 'chains') return { nftables: items.filter((i) => i.chain) };
    const hit = items.filter((i) => i[kind]?.name === name);
    return hit.length > 0 ? { nftables: hit } : undefined;
  }
}

const lines = (script: string | undefined) => (script ?? '').trim().split('\n');

/** A port's elements in its network's edge sets, as the whole-table plan diffs them (sets by name). */
const edgeElements = (verb: 'add' | 'delete', p: GuardPort, e = 'gae1') => [
  // Adds in rendered order, deletes in the order nft lists the elements.
  verb === 'add'
    ? `add element ${T} addrs_${e} { "${p.ifname}" . ${p.mac} . ${p.ipv4}, "${p.ifname}" . ${p.mac} . 0.0.0.0 }`
    : `delete element ${T} addrs_${e} { "${p.ifname}" . ${p.mac} . 0.0.0.0, "${p.ifname}" . ${p.mac} . ${p.ipv4} }`,
  `${verb} element ${T} hosts_${e} { "${p.ifname}" . ${p.mac} }`,
  `${verb} element ${T} ips_${e} { ${p.ipv4} }`,
  `${verb} element ${T} macs_${e} { ${p.mac} }`,
];

t.test(
  'an absent table is created whole: the skeleton first (every guest port closed), then the ports',
  async (t) => {
    for (const absent of [false, true]) {
      const nft = new RecordingNft(undefined);
      t.equal(await new Guard(names, nft).apply(both, { absent }), true);
      t.equal(nft.scripts.length, 2, 'two transactions');
      const [first, second] = nft.scripts.map(lines) as [string[], string[]];
      t.same(
        first.slice(0, 2),
        ['add table bridge ga_guard', 'delete table bridge ga_guard'],
        'replaces what is there',
      );
      t.same(first.slice(2), lines(renderGuard(names, { ports: [], endpoints: [EP] })), 'the skeleton alone');
      t.same([...first.slice(2), ...second], lines(renderGuard(names, both)), 'together: the whole table');
    }
    const known = new RecordingNft(undefined);
    await new Guard(names, known).apply(both, { absent: true });
    t.equal(known.tableReads, 0, 'a table known gone is not read');
  },
);

t.test('the same state again runs nothing', async (t) => {
  const nft = new RecordingNft(listing(both));
  t.equal(await new Guard(names, nft).apply(both), false);
  t.same(nft.scripts, []);
});

t.test('a new port is added alone', async (t) => {
  const nft = new RecordingNft(listing({ ports: [A], endpoints: [EP] }));
  await new Guard(names, nft).apply(both);
  t.equal(nft.scripts.length, 1);
  t.same(lines(nft.scripts[0]), [...portCommands(names, B, EP), ...edgeElements('add', B)]);
  t.notMatch(nft.scripts[0], /gapa/, 'port A is not touched');
});

t.test('a port no longer desired loses its elements, chain and counters, in that order', async (t) => {
  const nft = new RecordingNft(listing(both));
  await new Guard(names, nft).apply({ ports: [A], endpoints: [EP] });
  t.same(lines(nft.scripts[0]), [
    ...edgeElements('delete', B),
    `delete element ${T} ports { "gapb" }`,
    `delete element ${T} dhcp_paths { "gapb" . "gae1" }`,
    `delete element ${T} dhcp_replies { "gapb" . 0x02000000000b }`,
    `delete element ${T} edges { "gapb" }`,
    `delete chain ${T} port_gapb`,
    ...DROP_REASONS.map((r) => `delete counter ${T} gapb.${r}`),
  ]);
});

t.test('a changed port has its chain refilled; counters and elements stay', async (t) => {
  const nft = new RecordingNft(listing(both));
  const moved = { ...B, ipv4: '10.9.0.99' };
  await new Guard(names, nft).apply({ ports: [A, moved], endpoints: [EP] });
  const got = lines(nft.scripts[0]);
  t.equal(got[0], `flush chain ${T} port_gapb`);
  t.equal(got.length, 22, 'flush, 17 rules and 4 element changes');
  t.ok(got.slice(1, 18).every((l) => l.startsWith(`add rule ${T} port_gapb `)));
  t.match(got.join('\n'), /ip saddr 10\.9\.0\.99 accept/);
  t.same(got.slice(18), [
    `add element ${T} addrs_gae1 { "gapb" . 02:00:00:00:00:0b . 10.9.0.99 }`,
    `add element ${T} ips_gae1 { 10.9.0.99 }`,
    `delete element ${T} addrs_gae1 { "gapb" . 02:00:00:00:00:0b . 10.9.0.11 }`,
    `delete element ${T} ips_gae1 { 10.9.0.11 }`,
  ]);
  t.notMatch(nft.scripts[0], /gapa|counter bridge|element \S+ \S+ (ports|dhcp_)/);
});

t.test(
  'a moved endpoint: new network objects first, paths and edges re-pointed, the old ones last',
  async (t) => {
    const nft = new RecordingNft(listing(both));
    const EP2 = { ...EP, ifname: 'gae2' };
    await new Guard(names, nft).apply({ ports: [A, B], endpoints: [EP2] });
    const repoint = (p: string) => [
      `delete element ${T} dhcp_paths { "${p}" . "gae1" }`,
      `add element ${T} dhcp_paths { "${p}" . "gae2" }`,
      `delete element ${T} edges { "${p}" }`,
      `add element ${T} edges { "${p}" : jump edge_gae2 }`,
    ];
    t.same(lines(nft.scripts[0]), [
      ...addEndpointCommands(T, EP2),
      ...repoint('gapa'),
      ...repoint('gapb'),
      `add element ${T} addrs_gae2 { "gapa" . 02:00:00:00:00:0a . 10.9.0.10, "gapa" . 02:00:00:00:00:0a . 0.0.0.0, "gapb" . 02:00:00:00:00:0b . 10.9.0.11, "gapb" . 02:00:00:00:00:0b . 0.0.0.0 }`,
      `add element ${T} hosts_gae2 { "gapa" . 02:00:00:00:00:0a, "gapb" . 02:00:00:00:00:0b }`,
      `add element ${T} ips_gae2 { 10.9.0.10, 10.9.0.11 }`,
      `add element ${T} macs_gae2 { 02:00:00:00:00:0a, 02:00:00:00:00:0b }`,
      `delete element ${T} endpoints { "gae1" }`,
      `delete chain ${T} ep_gae1`,
      `delete chain ${T} edge_gae1`,
      ...['hosts', 'addrs', 'macs', 'ips'].map((k) => `delete set ${T} ${k}_gae1`),
      ...EDGE_REASONS.map((r) => `delete counter ${T} gae1.${r}`),
    ]);
  },
);

t.test('a changed service address refills only the edge chain', async (t) => {
  const nft = new RecordingNft(listing(both));
  await new Guard(names, nft).apply({ ports: [A, B], endpoints: [{ ...EP, serviceIp: '10.9.0.253' }] });
  const got = lines(nft.scripts[0]);
  t.same(got[0], `flush chain ${T} edge_gae1`);
  t.equal(got.length, 10, 'flush and 9 rules');
  t.match(got.join('\n'), /arp saddr ip \{ 10\.9\.0\.253, 169\.254\.169\.254 \}/);
});

t.test(
  'a port whose network has no endpoint gets no edge elements, and loses them when it goes',
  async (t) => {
    const nft = new RecordingNft(listing(both));
    const C = { ...B, network: 'n2' };
    await new Guard(names, nft).apply({ ports: [A, C], endpoints: [EP] });
    t.same(lines(nft.scripts[0]), [
      `delete element ${T} dhcp_paths { "gapb" . "gae1" }`,
      `delete element ${T} edges { "gapb" }`,
      ...edgeElements('delete', B),
    ]);
  },
);

t.test('a table from another berth version is rebuilt in the same transaction', async (t) => {
  const nft = new RecordingNft(listing(both, 'feedfacecafe'));
  const guard = new Guard(names, nft);
  await guard.apply(both);
  t.equal(nft.scripts[0], `delete table ${T}\n${renderGuard(names, both)}`);
  await t.rejects(guard.addPort(B), { code: 'BERTH_ERR_CONFLICT', message: /another berth version/ });
});

t.test('addPort and removePort leave other ports alone', async (t) => {
  const nft = new RecordingNft(listing({ ports: [A], endpoints: [EP] }));
  const guard = new Guard(names, nft);
  await t.rejects(guard.addPort(B), { code: 'BERTH_ERR_CONFLICT', message: /call apply\(\) first/ });
  t.equal(await guard.apply({ ports: [A], endpoints: [EP] }), false);
  const reads = nft.tableReads;
  t.equal(await guard.addPort(B), true, 'addPort does not remove A although A is not in its argument');
  t.same(lines(nft.scripts[0]), addPortCommands(names, B, EP));
  t.same(lines(nft.scripts[0]).slice(-4), portEdgeCommands(T, B, 'gae1', 'add'));
  t.equal(nft.tableReads, reads, 'a port wholly absent is added without listing the whole table');
  nft.table = listing(both);
  t.equal(await guard.addPort(B), false);
  t.equal(nft.tableReads, reads + 1, 'a port already there is compared against the whole table');
  t.equal(await guard.removePort('gapa'), true);
  t.notMatch(nft.scripts[1], /gapb/);
  t.same(lines(nft.scripts[1]), [
    `delete element ${T} ports { "gapa" }`,
    `delete element ${T} dhcp_paths { "gapa" . "gae1" }`,
    `delete element ${T} dhcp_replies { "gapa" . 0x02000000000a }`,
    `delete element ${T} edges { "gapa" }`,
    `delete element ${T} hosts_gae1 { "gapa" . 02:00:00:00:00:0a }`,
    `delete element ${T} addrs_gae1 { "gapa" . 02:00:00:00:00:0a . 10.9.0.10, "gapa" . 02:00:00:00:00:0a . 0.0.0.0 }`,
    `delete element ${T} macs_gae1 { 02:00:00:00:00:0a }`,
    `delete element ${T} ips_gae1 { 10.9.0.10 }`,
    `delete chain ${T} port_gapa`,
    ...DROP_REASONS.map((r) => `delete counter ${T} gapa.${r}`),
  ]);
  t.equal(nft.tableReads, reads + 1, 'a port wholly there is removed without listing the whole table');
  t.equal(await guard.removePort('gapz'), false, 'an unknown port is already removed');
  nft.table = undefined;
  t.equal(await guard.removePort('gapa'), false, 'no table is created just to remove a port');
  t.equal(nft.scripts.length, 2);
});

t.test('drops are read per port and reason from the named counters', async (t) => {
  const guard = new Guard(names, new RecordingNft(listing({ ports: [A], endpoints: [EP] }, undefined, 3)));
  const drops = await guard.drops();
  t.equal(drops.length, DROP_REASONS.length + EDGE_REASONS.length + TABLE_COUNTERS.length);
  t.same(
    drops.find((d) => d.port === 'gae1' && d.reason === 'edge-to-endpoint'),
    { port: 'gae1', reason: 'edge-to-endpoint', packets: 3, bytes: 180 },
    "a network's edge drops are reported under its endpoint port",
  );
  t.same(
    drops.find((d) => d.port === 'gapa' && d.reason === 'arp-spoof'),
    { port: 'gapa', reason: 'arp-spoof', packets: 3, bytes: 180 },
  );
  t.same(
    drops.find((d) => d.reason === 'unguarded'),
    { port: '*', reason: 'unguarded', packets: 3, bytes: 180 },
  );
  t.same(await new Guard(names, new RecordingNft(undefined)).drops(), []);
});

t.test('failures name the table and keep the cause', async (t) => {
  const failing: NftApplier = {
    run: async () => {
      throw new CommandError(['nft', '-f', '-'], 1, 'Error: Could not process rule: Operation not supported');
    },
    listTable: async () => undefined,
    list: async () => undefined,
  };
  await t.rejects(new Guard(names, failing).apply(both), {
    code: 'BERTH_ERR_HOST_OP',
    message:
      'could not apply guard table "ga_guard": nft -f -: Error: Could not process rule: Operation not supported',
  });
  const absent = new RecordingNft(undefined);
  await new Guard(names, absent).destroy();
  t.same(absent.scripts, [], 'destroying an absent table runs nothing');
  const present = new RecordingNft(listing(both));
  await new Guard(names, present).destroy();
  t.same(present.scripts, [`delete table ${T}\n`]);
});

t.test('the real adapter runs nft with argv and stdin, and reads absence as undefined', async (t) => {
  const calls: { argv: string[]; input?: string }[] = [];
  let listResult: () => Promise<{ stdout: string; stderr: string }> = async () => ({
    stdout: '{"nftables":[]}',
    stderr: '',
  });
  const runner: CommandRunner = {
    run: async (argv, options = {}) => {
      calls.push({ argv, ...(options.input === undefined ? {} : { input: options.input }) });
      return argv[1] === '-j' ? listResult() : { stdout: '', stderr: '' };
    },
  };
  const nft = new CommandNftApplier(runner);
  await nft.run('add table bridge ga_guard\n');
  t.same(await nft.listTable('bridge', 'ga_guard'), { nftables: [] });
  t.same(calls, [
    { argv: ['nft', '-f', '-'], input: 'add table bridge ga_guard\n' },
    { argv: ['nft', '-j', 'list', 'table', 'bridge', 'ga_guard'] },
  ]);
  listResult = async () => {
    throw new CommandError([], 1, 'Error: No such file or directory\nlist table bridge ga_guard');
  };
  t.equal(await nft.listTable('bridge', 'ga_guard'), undefined);
  listResult = async () => {
    throw new CommandError([], 1, 'Error: Operation not permitted');
  };
  await t.rejects(nft.listTable('bridge', 'ga_guard'), /Operation not permitted/);
});

t.test('observe reads single elements and handles by position', async (t) => {
  const seen = observeGuard({
    nftables: [
      { map: { name: 'ports', elem: [['gapa', { jump: { target: 'port_gapa' } }]] } },
      { set: { name: 'dhcp_paths', elem: { elem: { val: { concat: ['gapa', 'gae1'] } } } } },
      { rule: { chain: 'port_gapa', handle: 7 } },
    ],
  });
  t.same([...seen.dispatch], [['gapa', 'port_gapa']]);
  t.same(seen.paths, [['gapa', 'gae1']]);
  t.same([...seen.chains], [['gapa', undefined]], 'a chain without a fingerprint reads as changed');
  t.same([...handlesOf(listing({ ports: [A], endpoints: [] }))].slice(-2), [
    ['rule port_gapa[0]', 26],
    ['rule port_gapa[1]', 27],
  ]);
});

t.test('a one-port script nft refuses falls back to the whole-table reconcile', async (t) => {
  const nft = new RecordingNft(listing({ ports: [A], endpoints: [EP] }));
  const guard = new Guard(names, nft);
  await guard.apply({ ports: [A], endpoints: [EP] });
  let refusals = 1;
  const run = nft.run.bind(nft);
  nft.run = async (script) => {
    if (refusals-- > 0)
      throw new CommandError(['nft', '-f', '-'], 1, 'Error: Could not process rule: File exists');
    return run(script);
  };
  const reads = nft.tableReads;
  t.equal(await guard.addPort(B), true);
  t.equal(nft.tableReads, reads + 1, 'the whole table was read after the refusal');
  t.same(lines(nft.scripts.at(-1)), [...portCommands(names, B, EP), ...edgeElements('add', B)]);
});

t.test("addPort of a changed port swaps only its own edge elements, never another port's", async (t) => {
  const nft = new RecordingNft(listing(both));
  const guard = new Guard(names, nft);
  await guard.apply(both);
  t.equal(await guard.addPort({ ...A, ipv4: '10.9.0.77' }), true);
  const got = lines(nft.scripts.at(-1));
  t.same(got.slice(-4), [
    `add element ${T} addrs_gae1 { "gapa" . 02:00:00:00:00:0a . 10.9.0.77 }`,
    `add element ${T} ips_gae1 { 10.9.0.77 }`,
    `delete element ${T} addrs_gae1 { "gapa" . 02:00:00:00:00:0a . 10.9.0.10 }`,
    `delete element ${T} ips_gae1 { 10.9.0.10 }`,
  ]);
  t.notMatch(nft.scripts.at(-1), /gapb|02:00:00:00:00:0b|10\.9\.0\.11/, 'port B is not touched');
});

t.test('an endpoint the table lacks is created before a port that needs it', async (t) => {
  const nft = new RecordingNft(listing({ ports: [A], endpoints: [] }));
  const guard = new Guard(names, nft);
  t.equal(
    await guard.apply({ ports: [A], endpoints: [] }),
    false,
    'a port without a network has no edge objects',
  );
  await guard.apply({ ports: [A], endpoints: [EP] });
  const got = lines(nft.scripts[0]);
  t.same(got.slice(0, addEndpointCommands(T, EP).length), addEndpointCommands(T, EP));
  t.ok(
    got.indexOf(`add element ${T} edges { "gapa" : jump edge_gae1 }`) >
      got.indexOf(`add chain ${T} edge_gae1`),
    'the edges element comes after the chain it jumps to',
  );
});

t.test('removePort told the port it removes reads no edge listings; nft checks the elements', async (t) => {
  const nft = new RecordingNft(listing(both));
  const guard = new Guard(names, nft);
  await guard.apply(both);
  t.equal(await guard.removePort('gapa', A), true);
  t.notOk(
    nft.listed.some((l) => /edges|addrs_/.test(l)),
    `listings read: ${nft.listed.join('; ')}`,
  );
  t.match(
    nft.scripts.at(-1),
    /delete element bridge ga_guard addrs_gae1 \{ "gapa" \. 02:00:00:00:00:0a \. 10\.9\.0\.10, "gapa" \. 02:00:00:00:00:0a \. 0\.0\.0\.0 \}/,
  );
  nft.listed.length = 0;
  nft.table = listing({ ports: [B], endpoints: [EP] });
  t.equal(await guard.addPort(A), true);
  t.notOk(
    nft.listed.some((l) => /edges|addrs_/.test(l)),
    'adding reads no edge listings either',
  );
  nft.listed.length = 0;
  nft.table = listing(both);
  t.equal(await guard.removePort('gapa'), true);
  t.ok(
    nft.listed.some((l) => /edges/.test(l)),
    'without the port, its edges element is read',
  );
});

t.test(
  'repairPorts rewrites the named ports without reading the table; a refused script falls back to the reconcile',
  async (t) => {
    const nft = new RecordingNft(listing(both));
    const guard = new Guard(names, nft);
    await guard.apply(both);
    const reads = nft.tableReads;
    t.equal(await guard.repairPorts(both, ['gapa']), true);
    t.equal(nft.tableReads, reads, 'no whole-table read');
    const script = lines(nft.scripts.at(-1));
    t.ok(script.includes('flush chain bridge ga_guard port_gapa'), 'the chain is emptied first');
    t.ok(
      script.includes('add element bridge ga_guard ports { "gapa" : jump port_gapa }'),
      'the dispatch element',
    );
    t.ok(
      script.some((l) => l.startsWith('add element bridge ga_guard edges { "gapa"')),
      'its edge dispatch element too',
    );
    t.notMatch(nft.scripts.at(-1) ?? '', /gapb/, 'the other port is not touched');

    const refusing = new RecordingNft(listing(both));
    const strict = new Guard(names, refusing);
    await strict.apply(both);
    refusing.run = async (s: string) => {
      if (s.includes('flush chain')) throw new Error('File exists');
      refusing.scripts.push(s);
    };
    const before = refusing.tableReads;
    t.equal(await strict.repairPorts(both, ['gapa']), false, 'the reconcile found nothing else to change');
    t.equal(refusing.tableReads, before + 1, 'fell back to reading the whole table');
  },
);
