// Reconcile as transactions: what Guard sends to nft for add, remove, change
// and no-op, against listings shaped like `nft -j list table` output.
import t from 'tap';
import { CommandError, type CommandRunner } from '../../hostnet/command.js';
import { Guard } from '../../hostnet/guard/guard.js';
import { CommandNftApplier, type NftApplier } from '../../hostnet/guard/nft.js';
import { handlesOf, observeGuard } from '../../hostnet/guard/observe.js';
import {
  addPortCommands,
  counterName,
  DROP_REASONS,
  type GuardPort,
  type GuardState,
  portFingerprint,
  renderGuard,
  skeletonFingerprint,
  TABLE_COUNTERS,
} from '../../hostnet/guard/render.js';
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
const EP = { network: 'n1', bridge: 'gab1', ifname: 'gae1' };
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
  const elem = state.ports.map((p) => [p.ifname, { jump: { target: `port_${p.ifname}` } }]);
  items.push({ map: { name: 'ports', handle: ++handle, ...(elem.length ? { elem } : {}) } });
  const paths = state.ports.flatMap((p) => {
    const ep = state.endpoints.find((e) => e.network === p.network);
    return ep ? [{ concat: [p.ifname, ep.ifname] }] : [];
  });
  items.push({ set: { name: 'dhcp_paths', handle: ++handle, ...(paths.length ? { elem: paths } : {}) } });
  const replies = state.ports.map((p) => ({
    concat: [p.ifname, Number.parseInt(p.mac.replaceAll(':', ''), 16)],
  }));
  items.push({
    set: { name: 'dhcp_replies', handle: ++handle, ...(replies.length ? { elem: replies } : {}) },
  });
  for (const c of ['prerouting', 'forward', ...state.ports.map((p) => `port_${p.ifname}`)]) {
    items.push({ chain: { table: 'ga_guard', name: c, handle: ++handle } });
  }
  items.push({
    rule: { chain: 'prerouting', handle: ++handle, comment: `berth guard ${skeleton}`, expr: [] },
  });
  for (const p of state.ports) {
    items.push({ rule: { chain: `port_${p.ifname}`, handle: ++handle, expr: [] } });
    items.push({
      rule: { chain: `port_${p.ifname}`, handle: ++handle, comment: `berth guard ${portFingerprint(p)}` },
    });
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
  /** `chains bridge`, or one map or set by name, cut from the table listing. */
  async list(what: string[]): Promise<unknown> {
    const items = (this.table as { nftables?: Record<string, { name?: string }>[] } | undefined)?.nftables;
    if (!items) return what[0] === 'chains' ? { nftables: [] } : undefined;
    const [kind, , , name] = what as [string, string, string?, string?];
    if (kind === 'chains') return { nftables: items.filter((i) => i.chain) };
    const hit = items.filter((i) => i[kind]?.name === name);
    return hit.length > 0 ? { nftables: hit } : undefined;
  }
}

const lines = (script: string | undefined) => (script ?? '').trim().split('\n');

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
  t.same(lines(nft.scripts[0]), addPortCommands(names, B, 'gae1'));
  t.notMatch(nft.scripts[0], /gapa/, 'port A is not touched');
});

t.test('a port no longer desired loses its element, chain and counters, in that order', async (t) => {
  const nft = new RecordingNft(listing(both));
  await new Guard(names, nft).apply({ ports: [A], endpoints: [EP] });
  t.same(lines(nft.scripts[0]), [
    `delete element ${T} ports { "gapb" }`,
    `delete element ${T} dhcp_paths { "gapb" . "gae1" }`,
    `delete element ${T} dhcp_replies { "gapb" . 0x02000000000b }`,
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
  t.equal(got.length, 18, 'flush plus 17 rules');
  t.ok(got.slice(1).every((l) => l.startsWith(`add rule ${T} port_gapb `)));
  t.match(got.join('\n'), /ip saddr 10\.9\.0\.99 accept/);
  t.notMatch(nft.scripts[0], /gapa|counter bridge|element/);
});

t.test('a moved endpoint swaps only DHCP paths', async (t) => {
  const nft = new RecordingNft(listing(both));
  await new Guard(names, nft).apply({ ports: [A, B], endpoints: [{ ...EP, ifname: 'gae2' }] });
  t.same(lines(nft.scripts[0]), [
    `delete element ${T} dhcp_paths { "gapa" . "gae1" }`,
    `add element ${T} dhcp_paths { "gapa" . "gae2" }`,
    `delete element ${T} dhcp_paths { "gapb" . "gae1" }`,
    `add element ${T} dhcp_paths { "gapb" . "gae2" }`,
  ]);
});

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
  t.same(lines(nft.scripts[0]), addPortCommands(names, B, 'gae1'));
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
  t.equal(drops.length, DROP_REASONS.length + TABLE_COUNTERS.length);
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
    ['rule port_gapa[0]', 21],
    ['rule port_gapa[1]', 22],
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
  t.same(lines(nft.scripts.at(-1)), addPortCommands(names, B, 'gae1'));
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
