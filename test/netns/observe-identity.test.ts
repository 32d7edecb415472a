// Root tier: real bridges, veths and namespaces. Guests talk to a network's
// endpoint namespace, and the observer must name each caller by its assigned
// IP, the PERMANENT neighbour entry written for it (as berth writes it), and
// the bridge port the kernel shows its MAC on. A learned entry never decides.
import { readdirSync, readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { type CommandRunner, osCommandRunner } from '../../base/command.js';
import { Names } from '../../hostnet/names.js';
import { IdentityObserver, type ObserveChange } from '../../hostnet/observe/observer.js';
import { MemoryPortDirectory } from '../../hostnet/observe/resolve.js';

if (process.getuid?.() !== 0) {
  t.fail('the netns tier runs as root');
  process.exit(1);
}

const names = new Names('ob');
const run = (...argv: string[]) => osCommandRunner.run(argv);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Unique per process, so parallel runs of this file cannot collide.
const tag = (process.pid % 46656).toString(36);

/** Counts the dumps the observer runs, to prove updates came from events. */
function countingRunner(): CommandRunner & { dumps: string[] } {
  const dumps: string[] = [];
  return {
    dumps,
    run(argv, options) {
      dumps.push(argv.join(' '));
      return osCommandRunner.run(argv, options);
    },
  };
}

/** `ip`/`bridge monitor` children of this process: the observer's own. */
function monitorChildren(): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (ppid === process.pid && cmd.includes('monitor')) found.push({ pid: Number(pid), cmd });
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

async function bridge(t: Test, name: string): Promise<void> {
  t.teardown(() => run('ip', 'link', 'del', name).catch(() => undefined));
  await run('ip', 'link', 'add', name, 'type', 'bridge');
  await run('ip', 'link', 'set', name, 'up');
}

/**
 * A namespace joined to `br` by a veth whose root end is `port`. IPv6 is off so
 * no background chatter moves MACs around the FDB behind the test's back.
 */
async function attach(
  t: Test,
  ns: string,
  port: string,
  br: string,
  addrs: string[],
  mac?: string,
): Promise<void> {
  t.teardown(() => run('ip', 'netns', 'del', ns).catch(() => undefined));
  await run('ip', 'netns', 'add', ns);
  await run('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1');
  await run('ip', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  await run('ip', 'link', 'set', port, 'master', br, 'up');
  if (mac) await run('ip', '-n', ns, 'link', 'set', 'eth0', 'address', mac);
  for (const a of addrs) await run('ip', '-n', ns, 'addr', 'add', a, 'dev', 'eth0');
  await run('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
  await run('ip', '-n', ns, 'link', 'set', 'lo', 'up');
}

const ping = (ns: string, ip: string) => run('ip', 'netns', 'exec', ns, 'ping', '-c1', '-W2', ip);
/** What berth writes for each guest: the endpoint's PERMANENT entry assigned IP -> assigned MAC. */
const pin = (ns: string, ip: string, mac: string) =>
  run('ip', '-n', ns, 'neigh', 'replace', ip, 'lladdr', mac, 'dev', 'eth0', 'nud', 'permanent');

t.test('each guest resolves to its own instance; strangers and clones do not', async (t) => {
  const net = `n1${tag}`;
  const br = names.bridge(net);
  const epNs = `ob-ep-${tag}`;
  const port = (x: string) => `obp${tag}${x}`;
  const guests = {
    a: {
      ns: `ob-g-${tag}-a`,
      port: port('a'),
      mac: '02:0b:00:00:00:11',
      ip: '10.99.0.11',
      instance: 'inst-a',
    },
    b: {
      ns: `ob-g-${tag}-b`,
      port: port('b'),
      mac: '02:0b:00:00:00:12',
      ip: '10.99.0.12',
      instance: 'inst-b',
    },
  };
  await bridge(t, br);
  await attach(t, epNs, names.endpointVeth(net), br, ['10.99.0.2/24', '169.254.169.254/32']);
  const directory = new MemoryPortDirectory();
  for (const g of Object.values(guests)) {
    await attach(t, g.ns, g.port, br, [`${g.ip}/24`], g.mac);
    await run('ip', '-n', g.ns, 'route', 'add', '169.254.169.254/32', 'dev', 'eth0');
    directory.set({ ifname: g.port, mac: g.mac, instance: g.instance, network: net, ip: g.ip });
  }

  const runner = countingRunner();
  const warnings: unknown[] = [];
  // A resync period longer than the test: every update below must come from events.
  const observer = new IdentityObserver({
    names,
    directory,
    runner,
    resyncMs: 60_000,
    logger: { warn: (o) => warnings.push(o) },
  });
  t.teardown(() => observer.stop());
  const changes: ObserveChange[] = [];
  observer.onChange((c) => changes.push(c));
  await observer.start();
  await observer.addNetwork({ name: net, bridge: br, netns: epNs });
  t.equal(monitorChildren().length, 2, 'one FDB monitor and one neighbour monitor run');
  const dumpsAtStart = runner.dumps.length;

  // Guest A speaks before its entry is pinned: the endpoint learns A by ARP, and that never decides.
  await ping(guests.a.ns, '10.99.0.2');
  await waitFor(
    () => (observer.resolveNow(net, guests.a.ip) as { reason?: string }).reason !== 'no-neighbour',
  );
  t.same(
    observer.resolveNow(net, guests.a.ip),
    { ok: false, reason: 'neighbour-not-pinned', mac: guests.a.mac, port: guests.a.port, instance: 'inst-a' },
    'a learned neighbour entry is refused',
  );
  await run('ip', '-n', epNs, 'neigh', 'flush', 'dev', 'eth0');
  await run('bridge', 'fdb', 'del', guests.a.mac, 'dev', guests.a.port, 'master').catch(() => undefined);
  await waitFor(
    () => (observer.resolveNow(net, guests.a.ip) as { reason?: string }).reason === 'no-neighbour',
  );

  for (const g of Object.values(guests)) {
    t.same(
      observer.resolveNow(net, g.ip),
      { ok: false, reason: 'no-neighbour', instance: g.instance },
      `${g.ip} has no entry before berth pins it`,
    );
    await pin(epNs, g.ip, g.mac);
    await waitFor(() => (observer.resolveNow(net, g.ip) as { reason?: string }).reason !== 'no-neighbour');
    t.same(
      observer.resolveNow(net, g.ip),
      { ok: false, reason: 'mac-not-on-port', mac: g.mac, instance: g.instance },
      `${g.ip} is pinned, its MAC not yet seen on any port`,
    );
    // The guest's first frame races its own FDB event; resolve() must wait, not refuse.
    const started = performance.now();
    const [answer] = await Promise.all([
      observer.resolve(net, g.ip, { waitMs: 3000 }),
      ping(g.ns, '169.254.169.254'),
    ]);
    t.same(answer, { ok: true, mac: g.mac, port: g.port, instance: g.instance }, `${g.ip} is ${g.instance}`);
    t.comment(
      `${g.instance}: resolved ${(performance.now() - started).toFixed(1)} ms after its first ping started`,
    );
  }
  t.same(observer.resolveNow(net, '::ffff:10.99.0.12'), {
    ok: true,
    mac: guests.b.mac,
    port: guests.b.port,
    instance: 'inst-b',
  });

  // A namespace on a port that no instance owns.
  const stranger = { ns: `ob-g-${tag}-u`, port: port('u'), mac: '02:0b:00:00:00:13' };
  await attach(t, stranger.ns, stranger.port, br, ['10.99.0.13/24'], stranger.mac);
  await ping(stranger.ns, '10.99.0.2');
  await waitFor(() => observer.resolveNow(net, '10.99.0.13').port !== undefined);
  t.same(await observer.resolve(net, '10.99.0.13', { waitMs: 2000 }), {
    ok: false,
    reason: 'ip-not-assigned',
    mac: stranger.mac,
    port: stranger.port,
  });

  // A clone of B (same MAC and IP) on a third port: the FDB learns B's MAC there.
  const clone = { ns: `ob-g-${tag}-m`, port: port('m') };
  await attach(t, clone.ns, clone.port, br, [`${guests.b.ip}/24`], guests.b.mac);
  await ping(clone.ns, '10.99.0.2');
  await waitFor(() => observer.resolveNow(net, guests.b.ip).ok === false);
  t.same(observer.resolveNow(net, guests.b.ip), {
    ok: false,
    reason: 'mac-wrong-port',
    mac: guests.b.mac,
    port: clone.port,
    instance: 'inst-b',
  });
  t.ok(
    changes.some(
      (c) =>
        c.kind === 'fdb' &&
        c.mac === guests.b.mac &&
        c.port === clone.port &&
        c.previousPort === guests.b.port,
    ),
    'the move was reported to listeners',
  );
  // When the real B speaks again, its MAC moves back and B is B again.
  await ping(guests.b.ns, '10.99.0.2');
  await waitFor(() => observer.resolveNow(net, guests.b.ip).ok);
  t.equal(observer.resolveNow(net, guests.b.ip).ok, true);

  t.same(runner.dumps.length, dumpsAtStart, 'no dump ran after start: events alone fed the views');
  // An address nobody was assigned is refused at once: no wait, no dump.
  t.same(await observer.resolve(net, '10.99.0.98', { waitMs: 50 }), { ok: false, reason: 'ip-not-assigned' });
  t.equal(runner.dumps.length, dumpsAtStart, 'an unassigned IP costs no dump');
  // An assigned IP with no entry yet: after the wait, one dump of each table, then refused.
  directory.set({
    ifname: port('z'),
    mac: '02:0b:00:00:00:99',
    instance: 'inst-z',
    network: net,
    ip: '10.99.0.99',
  });
  t.same(await observer.resolve(net, '10.99.0.99', { waitMs: 50 }), {
    ok: false,
    reason: 'no-neighbour',
    instance: 'inst-z',
  });
  t.equal(runner.dumps.length, dumpsAtStart + 2, 'the FDB and the neighbours dumped once each');
  t.same(warnings, []);

  observer.stop();
  await waitFor(() => monitorChildren().length === 0);
  t.same(monitorChildren(), [], 'stop() leaves no monitor running');
});

t.test('two networks with the same subnet and guest IPs stay apart', async (t) => {
  const directory = new MemoryPortDirectory();
  const observer = new IdentityObserver({ names, directory, resyncMs: 60_000 });
  t.teardown(() => observer.stop());
  await observer.start();
  const nets = [1, 2].map((i) => ({
    name: `n${i}${tag}x`,
    ep: `ob-ep-${tag}-${i}`,
    guest: `ob-g-${tag}-s${i}`,
    port: `obp${tag}s${i}`,
    mac: `02:0b:00:00:01:0${i}`,
    instance: `inst-s${i}`,
  }));
  for (const n of nets) {
    const br = names.bridge(n.name);
    await bridge(t, br);
    await attach(t, n.ep, names.endpointVeth(n.name), br, ['10.99.0.2/24', '169.254.169.254/32']);
    await attach(t, n.guest, n.port, br, ['10.99.0.11/24'], n.mac);
    directory.set({ ifname: n.port, mac: n.mac, instance: n.instance, network: n.name, ip: '10.99.0.11' });
    await pin(n.ep, '10.99.0.11', n.mac);
    await observer.addNetwork({ name: n.name, bridge: br, netns: n.ep });
  }
  await Promise.all(nets.map((n) => ping(n.guest, '10.99.0.2')));
  for (const n of nets) {
    t.same(
      await observer.resolve(n.name, '10.99.0.11', { waitMs: 2000 }),
      { ok: true, mac: n.mac, port: n.port, instance: n.instance },
      `10.99.0.11 on ${n.name} is ${n.instance}`,
    );
  }
  // Removing one network stops its monitor and leaves the other answering.
  observer.removeNetwork(nets[0]?.name as string);
  t.throws(() => observer.resolveNow(nets[0]?.name as string, '10.99.0.11'), /not observed/);
  t.equal(observer.resolveNow(nets[1]?.name as string, '10.99.0.11').ok, true);
  await waitFor(() => monitorChildren().length === 2);
  t.equal(monitorChildren().length, 2, 'the FDB monitor and the remaining neighbour monitor');
});

t.test('a monitor killed under the observer is restarted and resynced', async (t) => {
  const net = `n3${tag}`;
  const br = names.bridge(net);
  const ep = `ob-ep-${tag}-k`;
  const guest = { ns: `ob-g-${tag}-k`, port: `obp${tag}k`, mac: '02:0b:00:00:02:01', ip: '10.99.0.21' };
  await bridge(t, br);
  await attach(t, ep, names.endpointVeth(net), br, ['10.99.0.2/24']);
  await attach(t, guest.ns, guest.port, br, [`${guest.ip}/24`], guest.mac);
  const directory = new MemoryPortDirectory();
  directory.set({ ifname: guest.port, mac: guest.mac, instance: 'inst-k', network: net, ip: guest.ip });
  const runner = countingRunner();
  const warnings: { reason?: string; restartInMs?: number }[] = [];
  const observer = new IdentityObserver({
    names,
    directory,
    runner,
    resyncMs: 60_000,
    backoff: { initialMs: 200, maxMs: 2000 },
    logger: { warn: (o) => warnings.push(o) },
  });
  t.teardown(() => observer.stop());
  await observer.start();
  await observer.addNetwork({ name: net, bridge: br, netns: ep });
  const neighMonitor = () => monitorChildren().find((c) => c.cmd === `ip -4 -n ${ep} monitor neigh`);
  const before = neighMonitor();
  t.ok(before, 'the neighbour monitor runs');
  const dumps = runner.dumps.length;
  // Our own child, by pid. The guest speaks while nobody listens: only the resync after restart can see it.
  process.kill(before?.pid as number, 'SIGKILL');
  await waitFor(() => observer.stats().monitorsAlive === 1);
  await pin(ep, guest.ip, guest.mac);
  await ping(guest.ns, '10.99.0.2');
  await waitFor(() => observer.resolveNow(net, guest.ip).ok);
  t.same(observer.resolveNow(net, guest.ip), {
    ok: true,
    mac: guest.mac,
    port: guest.port,
    instance: 'inst-k',
  });
  const after = neighMonitor();
  t.ok(after && after.pid !== before?.pid, 'a new monitor child runs');
  t.match(warnings, [{ reason: 'killed by SIGKILL', restartInMs: 200 }]);
  t.ok(runner.dumps.slice(dumps).includes(`ip -4 -n ${ep} -j neigh show`), 'the restart resynced the view');
});

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond() && Date.now() < until) await sleep(10);
}
