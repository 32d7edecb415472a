// GET /metrics on berthd's metrics address, after real traffic: a netns guest
// gets a DHCP lease from the endpoint and reads metadata, and a spoofed frame
// is dropped by the guard. The named families are there with the values that
// traffic must have produced.
import { createServer } from 'node:net';
import t from 'tap';
import type { BerthClient } from '../../agent/client/client.js';
import {
  removePrefixed,
  spawnBerthd,
  startBerthd,
  tempDir,
  uniquePrefix,
  writeTestConfig,
} from '../helpers/berthd.js';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function scrape(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (res.status !== 200) throw new Error(`metrics answered ${res.status}`);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    samples.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return samples;
}

async function exec(client: BerthClient, name: string, argv: string[]) {
  const r = await client.exec(name, argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${name}: ${r.stderr}`);
  return r.stdout;
}

t.test('metrics: instances, DHCP, metadata, resolve, guard, MAC pool, reconcile', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const port = await freePort();
  const d = await startBerthd(t, {
    prefix,
    config: `metrics:\n  listen: 127.0.0.1:${port}\nnetworks:\n  - name: opm\n    subnet: 10.251.9.0/24\n`,
  });
  await d.client.createInstance({ name: 'opm1', network: 'opm', runtime: 'netns' });
  await exec(d.client, 'opm1', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '5']);
  await exec(d.client, 'opm1', ['ip', 'route', 'add', '169.254.169.254', 'dev', 'eth0']);
  const id = await exec(d.client, 'opm1', [
    'curl',
    '-s',
    '-m',
    '5',
    'http://169.254.169.254/latest/meta-data/instance-id',
  ]);
  t.match(id, /^i-/);
  await exec(d.client, 'opm1', [
    'curl',
    '-s',
    '-o',
    '/dev/null',
    '-m',
    '5',
    'http://169.254.169.254/no-such-path',
  ]);
  // A frame from a MAC that is not the port's: the guard's mac-spoof counter.
  await exec(d.client, 'opm1', ['ip', 'link', 'set', 'eth0', 'address', '0a:00:00:00:00:99']);
  await d.client.exec('opm1', ['ping', '-c', '1', '-W', '1', '10.251.9.254']);

  // The endpoints report metadata answers every 2 s; guard counters are cached 5 s.
  let m = new Map<string, number>();
  for (let i = 0; i < 40; i++) {
    m = await scrape(port);
    if (
      (m.get('berth_metadata_requests_total{network="opm",status="404"}') ?? 0) >= 1 &&
      (m.get('berth_guard_dropped_packets_total{reason="mac-spoof"}') ?? 0) >= 1
    )
      break;
    await new Promise((r) => setTimeout(r, 250));
  }
  t.equal(m.get('berth_instances{state="running"}'), 1);
  t.equal(m.get('berth_instances{state="error"}'), 0);
  t.ok((m.get('berth_dhcp_messages_total{type="discover",verdict="offer"}') ?? 0) >= 1, 'DISCOVER answered');
  t.ok((m.get('berth_dhcp_messages_total{type="request",verdict="ack"}') ?? 0) >= 1, 'REQUEST acked');
  t.equal(m.get('berth_metadata_requests_total{network="opm",status="200"}'), 1);
  t.equal(m.get('berth_metadata_requests_total{network="opm",status="404"}'), 1);
  t.ok((m.get('berth_guard_dropped_packets_total{reason="mac-spoof"}') ?? 0) >= 1, 'spoofed frame counted');
  t.ok(
    (m.get('berth_resolve_duration_seconds_count{lookup="mac",result="ok"}') ?? 0) >= 2,
    'DHCP resolves timed',
  );
  t.ok(
    (m.get('berth_resolve_duration_seconds_count{lookup="ip",result="ok"}') ?? 0) >= 1,
    'metadata resolves timed',
  );
  t.ok((m.get('berth_resolve_duration_seconds_sum{lookup="ip",result="ok"}') ?? 1) < 0.5, 'resolve is fast');
  t.equal(m.get('berth_mac_pool_size{prefix="0a:b7:e7",use="assigned"}'), 1);
  const pool = (await d.client.pool()).pools[0];
  t.equal(m.get('berth_mac_pool_free{prefix="0a:b7:e7"}'), pool?.free, 'free as berthctl pool show has it');
  t.equal(pool?.free, (pool?.size ?? 0) - 1, 'one MAC taken');
  t.equal(m.get('berth_secgroup_packets_total{verdict="dropped"}'), 0, 'no guest in a group: no drops');
  t.ok((m.get('berth_reconcile_runs_total') ?? 0) >= 1);
  t.equal(m.get('berth_reconcile_errors_total'), 0);
  t.ok([...m.keys()].some((k) => k.startsWith('berth_info{')));
  t.ok(m.has('berth_process_resident_memory_bytes'));

  const other = await fetch(`http://127.0.0.1:${port}/v1/status`);
  t.equal(other.status, 404, 'only /metrics is served there');
  await d.client.deleteInstance('opm1');
  t.equal(await d.stop(), 0);
});

t.test('metrics.listen "" turns the listener off; a bad address is a config error', async (t) => {
  const dir = await tempDir(t, 'op-metrics');
  const bad = spawnBerthd([
    '--config',
    await writeTestConfig(dir, uniquePrefix(), 'networks: []\nmetrics:\n  listen: "localhost"\n'),
    '--state-dir',
    `${dir}/state`,
    '--socket',
    `${dir}/s.sock`,
  ]);
  t.equal(await bad.exited, 2);
  t.match(bad.stderr(), /metrics\.listen: "localhost" is not HOST:PORT/);
  const d = await startBerthd(t, { config: 'networks: []\nmetrics:\n  listen: ""\n' });
  t.notMatch(d.stderr(), /metrics on GET/);
  t.equal(await d.stop(), 0);
});
