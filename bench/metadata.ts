// Metadata benchmark: berth's authenticated metadata path against a bare
// fastify route and nginx serving the same bytes, in the same run, from the
// same netns guest through the same bridge and guard, with the same client.
//
// - berth: berthd (dist/) with one network and one netns instance; every
//   request is resolved to the instance (source IP -> cached identity), checked
//   against the policies and answered from the endpoint's rendered tree.
//   "berth+token" adds an IMDSv2 token to every request (AES-GCM check each time).
// - fastify: a bare `GET /latest/meta-data/instance-id` route returning the
//   instance id, in the endpoint's namespace on 169.254.169.254:8080.
// - nginx: a static file with the same bytes, 1 worker (berth's endpoint is one
//   process too), same namespace, on 169.254.169.254:8081.
// - node:http: the same bytes from a bare node:http handler on :8082: no
//   framework at all, so its p99 is the floor any Node server has on this
//   machine in this run.
//
// wrk -t1 -c50 runs in the guest, twice per server and round: saturated
// (throughput; latency there is mostly the queue of 50 connections on 2
// shared cores) and paced (each connection pauses PACE_MS after every
// answer, about 4k req/s offered: latency of the server itself). Medians of
// ROUNDS rounds, servers alternating. Run as root: npm run bench:metadata.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, removePrefixed, uniquePrefix } from '../test/helpers/berthd.js';
import { startBenchBerthd } from './lib/berthd.js';
import { nginxIn } from './lib/netns-peer.js';
import { sh, sleep, stopAll } from './lib/proc.js';
import { barAtLeast, barAtMost, median, provenance, updateResults } from './lib/results.js';
import { pacingScript, type WrkResult, wrk } from './lib/wrk.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = 50;
const PACE_MS = 10;
const PATH = '/latest/meta-data/instance-id';
const MD = 'http://169.254.169.254';

/** The three peers, in the endpoint's namespace, serving body at PATH. */
function startPeers(endpoint: string, dir: string, body: string): ChildProcess[] {
  const bare = join(dir, 'bare.mjs');
  writeFileSync(
    bare,
    `import Fastify from ${JSON.stringify(join(ROOT, 'node_modules/fastify/fastify.js'))};
const app = Fastify({ logger: false });
app.get(${JSON.stringify(PATH)}, async (_req, reply) => reply.header('content-type', 'text/plain').send(${JSON.stringify(body)}));
await app.listen({ host: '169.254.169.254', port: 8080 });
`,
  );
  const raw = join(dir, 'raw.mjs');
  writeFileSync(
    raw,
    `import { createServer } from 'node:http';
const body = Buffer.from(${JSON.stringify(body)});
createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}).listen(8082, '169.254.169.254');
`,
  );
  const www = join(dir, 'www');
  mkdirSync(join(www, 'latest/meta-data'), { recursive: true });
  writeFileSync(join(www, PATH), body);
  return [
    spawnIn(endpoint, [process.execPath, bare]),
    spawnIn(endpoint, [process.execPath, raw]),
    nginxIn(endpoint, dir, `server { listen 169.254.169.254:8081; root ${www}; }`),
  ];
}

function spawnIn(netns: string, argv: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'ignore', 'inherit'] });
}

type Side = 'berth' | 'berth+token' | 'fastify' | 'node:http' | 'nginx';
const fmt = (x: number) => x.toFixed(2);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:metadata needs root (bridges, namespaces, nftables)');
  const prefix = uniquePrefix();
  const dir = mkdtempSync(join(tmpdir(), 'bench-md-'));
  const procs: ChildProcess[] = [];
  const cleanup = async () => {
    await stopAll(procs);
    removePrefixed(prefix);
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    // One guest is the whole load here, so its rate limit is raised out of the
    // way; the limiter still runs on every request and its cost is measured.
    const d = await startBenchBerthd({
      prefix,
      dir,
      networks: '[{name: mdb, subnet: 10.92.0.0/24}]',
      metadata: '{rate_limit: {per_second: 1000000, burst: 1000000}}',
    });
    procs.push(d.proc);
    const inst = await d.client.createInstance({ name: 'b0', network: 'mdb', runtime: 'netns' });
    const nic = inst.nics[0];
    if (!nic || !inst.netns) throw new Error('instance has no NIC');
    const guest = inst.netns;
    await d.client.exec('b0', ['ip', 'addr', 'add', `${nic.ip}/24`, 'dev', 'eth0']);
    await d.client.exec('b0', ['ip', 'route', 'add', '169.254.169.254', 'dev', 'eth0']);
    const endpoint = (await d.client.network('mdb')).endpoint;
    const body = inst.id;
    procs.push(...startPeers(endpoint, dir, body));
    await sleep(1500);

    // Every server answers the same bytes before anything is measured.
    const curl = (args: string[]) => sh('ip', ['netns', 'exec', guest, 'curl', '-s', ...args]);
    const token = curl([
      '-X',
      'PUT',
      '-H',
      'X-aws-ec2-metadata-token-ttl-seconds: 21600',
      `${MD}/latest/api/token`,
    ]);
    for (const port of [80, 8080, 8081, 8082]) {
      const got = curl([`${MD}:${port}${PATH}`]);
      if (got !== body) throw new Error(`port ${port} answered "${got}", not "${body}"`);
    }

    const url: Record<Side, string> = {
      berth: `${MD}${PATH}`,
      'berth+token': `${MD}${PATH}`,
      fastify: `${MD}:8080${PATH}`,
      'node:http': `${MD}:8082${PATH}`,
      nginx: `${MD}:8081${PATH}`,
    };
    const headers = (s: Side) => (s === 'berth+token' ? [`X-aws-ec2-metadata-token: ${token}`] : []);
    const script = pacingScript(dir, PACE_MS);
    const base = { netns: guest, connections: CONNECTIONS, seconds: SECONDS };
    const empty = (): Record<Side, WrkResult[]> => ({
      berth: [],
      'berth+token': [],
      fastify: [],
      'node:http': [],
      nginx: [],
    });
    const sat = empty();
    const paced = empty();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const side of Object.keys(sat) as Side[]) {
        const s = wrk({ ...base, url: url[side], headers: headers(side) });
        sat[side].push(s);
        await sleep(300);
        const p = wrk({ ...base, url: url[side], headers: headers(side), script });
        paced[side].push(p);
        console.log(
          `round ${round} ${side}: saturated ${s.rps.toFixed(0)} req/s p99 ${fmt(s.p99)} ms; paced ${p.rps.toFixed(0)} req/s p99 ${fmt(p.p99)} ms; errors ${s.errors + p.errors}`,
        );
        await sleep(300);
      }
    }
    const m = (r: WrkResult[]) => ({
      rps: median(r.map((x) => x.rps)),
      p50: median(r.map((x) => x.p50)),
      p99: median(r.map((x) => x.p99)),
      errors: r.reduce((a, x) => a + x.errors, 0),
    });
    const fastify = m(sat.fastify);
    const rows = (Object.keys(sat) as Side[]).map((side) => {
      const s = m(sat[side]);
      const p = m(paced[side]);
      return `| ${side} | ${s.rps.toFixed(0)} | ${fmt(s.rps / fastify.rps)}× | ${fmt(s.p50)} | ${fmt(s.p99)} | ${p.rps.toFixed(0)} | ${fmt(p.p50)} | ${fmt(p.p99)} | ${s.errors + p.errors} |`;
    });
    const berth = m(sat.berth);
    // Under a noisy host the round-by-round ratio (measured seconds apart) is steadier.
    const paired = median(sat.berth.map((x, i) => x.rps / (sat.fastify[i]?.rps ?? Number.NaN)));
    const bars = [
      barAtLeast(
        'metadata throughput vs a bare fastify route',
        Math.min(berth.rps / fastify.rps, paired),
        0.8,
        '×',
        2,
      ),
      barAtMost('metadata p99 at 50 connections, paced (~4k req/s offered)', m(paced.berth).p99, 5, ' ms', 2),
      barAtMost('metadata p99 at 50 connections, saturated', berth.p99, 5, ' ms', 2),
    ];
    // nginx -v writes to stderr.
    const nginxVersion = spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr.trim();
    const section = [
      '## Metadata: berth vs a bare fastify route, bare node:http and nginx (`bench/metadata.ts`)',
      '',
      provenance(),
      `Client: wrk -t1 -c${CONNECTIONS} inside a netns guest, through the bridge and the guard, to \`${PATH}\` (the same ${body.length} bytes from every server); it shares the 2 cores with the servers. Median of ${ROUNDS} rounds of ${SECONDS} s per mode, servers alternating. Saturated: each connection sends again as soon as it is answered. Paced: each connection waits ${PACE_MS} ms after every answer (wrk's \`delay()\` hook), so the load offered stays below every server's capacity. berth's per-guest rate limit (default 200 requests/s, burst 400) is raised to 1,000,000/s for this guest, since it is the whole load; the limiter still runs on every request.`,
      '',
      '| server | saturated req/s | vs fastify | p50 ms | p99 ms | paced req/s | paced p50 ms | paced p99 ms | errors |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...rows,
      '',
      `Throughput ratio: medians ${fmt(berth.rps / fastify.rps)}×, median of per-round ratios ${fmt(paired)}×. Saturated p99 is the queue of 50 connections on 2 shared cores more than the server: compare it across servers in the same run. node:http is a bare handler with no framework: its p99 is what any Node process gets on this machine in this run, the floor under berth's and fastify's. ${nginxVersion}.`,
    ].join('\n');
    updateResults('metadata', section, bars);
    for (const b of bars)
      console.log(`${b.figure}: ${b.measured} (bar ${b.bar}) ${b.pass ? 'met' : 'NOT met'}`);
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
