// Micro-benchmark: resolveNow() against 1000 synthetic ports. It reports
// p50/p99 as comments; it asserts correctness, never speed.
import t from 'tap';
import type { CommandRunner } from '../../base/command.js';
import { intToIp, intToMac, ipToInt, macToInt } from '../../hostnet/ipv4.js';
import { Names } from '../../hostnet/names.js';
import type { MonitorSpawner } from '../../hostnet/observe/monitor.js';
import { IdentityObserver } from '../../hostnet/observe/observer.js';
import { MemoryPortDirectory } from '../../hostnet/observe/resolve.js';

const PORTS = 1000;
const ROUNDS = 200;

t.test(`resolveNow over ${PORTS} ports`, async (t) => {
  const directory = new MemoryPortDirectory();
  const fdb: unknown[] = [];
  const neigh: unknown[] = [];
  const ips: string[] = [];
  for (let i = 0; i < PORTS; i++) {
    const mac = intToMac(macToInt('02:0b:00:00:00:00') + i);
    const ip = intToIp(ipToInt('10.100.0.10') + i);
    const port = `obp${i.toString(36).padStart(6, '0')}`;
    directory.set({ ifname: port, mac, instance: `inst-${i}`, network: 'bench', ip });
    fdb.push({ mac, ifname: port, flags: ['sticky'], master: 'obbbench', state: 'static' });
    neigh.push({ dst: ip, dev: 'ep0', lladdr: mac, state: ['PERMANENT'] });
    ips.push(ip);
  }
  const runner: CommandRunner = {
    async run(argv) {
      return { stdout: JSON.stringify(argv.includes('fdb') ? fdb : neigh), stderr: '' };
    },
  };
  const spawner: MonitorSpawner = {
    spawn(_argv, h) {
      queueMicrotask(() => h.spawned());
      return { kill: () => h.exit('killed') };
    },
  };
  const observer = new IdentityObserver({ names: new Names('ob'), directory, runner, spawner, settleMs: 0 });
  t.teardown(() => observer.stop());
  await observer.start();
  await observer.addNetwork({ name: 'bench', bridge: 'obbbench', netns: 'ob-ep-bench' });

  // Warm the JIT before timing.
  for (let r = 0; r < 20; r++) for (const ip of ips) observer.resolveNow('bench', ip);
  const samples = new Float64Array(PORTS * ROUNDS);
  let okCount = 0;
  let n = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const ip of ips) {
      const t0 = process.hrtime.bigint();
      const res = observer.resolveNow('bench', ip);
      samples[n++] = Number(process.hrtime.bigint() - t0);
      if (res.ok) okCount++;
    }
  }
  t.equal(okCount, PORTS * ROUNDS, 'every synthetic guest resolves to its instance');
  t.same(observer.resolveNow('bench', '10.100.0.15'), {
    ok: true,
    mac: '02:0b:00:00:00:05',
    port: 'obp000005',
    instance: 'inst-5',
  });
  samples.sort();
  const q = (p: number) =>
    (samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] ?? 0) / 1000;
  t.comment(
    `resolveNow, ${PORTS} ports, ${samples.length} calls: p50 ${q(0.5).toFixed(2)} µs, p99 ${q(0.99).toFixed(2)} µs, ` +
      `max ${q(1).toFixed(1)} µs (each sample includes ~0.05 µs of hrtime overhead)`,
  );
  const start = process.hrtime.bigint();
  for (let r = 0; r < ROUNDS; r++) for (const ip of ips) observer.resolveNow('bench', ip);
  const perCall = Number(process.hrtime.bigint() - start) / (PORTS * ROUNDS);
  t.comment(
    `resolveNow batch: ${(perCall / 1000).toFixed(3)} µs per call, ${Math.round(1e9 / perCall)} calls/s`,
  );
});
