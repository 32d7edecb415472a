// Metadata benchmark: berth's authenticated metadata path against a bare
// fastify route and nginx serving the same bytes, in the same run, from the
// same netns guest through the same bridge, with the same client (wrk).
//
// - berth: berthd (dist/) with one network and one netns instance; every
//   request is resolved to the instance (source IP -> cached identity), checked
//   against the policies and answered from the endpoint's rendered tree. A
//   second figure adds an IMDSv2 token to every request (AES-GCM check each time).
// - fastify: a bare `GET /latest/meta-data/instance-id` route returning the
//   instance id, in the same endpoint namespace, on 169.254.169.254:8080.
// - nginx: a static file with the same bytes, 1 worker (berth's endpoint is one
//   process too), same namespace, on 169.254.169.254:8081.
//
// wrk runs in the guest: 1 thread, 50 connections, DURATION s per run; the
// median of ROUNDS rounds, servers alternating. Run as root: npm run bench:metadata
// (or: npm run build && node --import @tapjs/typescript/import bench/metadata.ts).
// Writes the metadata section of bench/RESULTS.md.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthClient } from '../agent/client/client.js';
import { BERTHD, ROOT, removePrefixed, uniquePrefix } from '../test/helpers/berthd.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DURATION = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = 50;
const PATH = '/latest/meta-data/instance-id';
const RESULTS = new URL('./RESULTS.md', import.meta.url).pathname;

const sh = (cmd: string, args: string[]) =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

function ms(text: string | undefined): number {
  if (!text) return Number.NaN;
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

function wrk(netns: string, url: string, headers: string[] = []): WrkResult {
  const out = sh('ip', [
    'netns',
    'exec',
    netns,
    'wrk',
    '-t1',
    `-c${CONNECTIONS}`,
    `-d${DURATION}s`,
    '--latency',
    ...headers.flatMap((h) => ['-H', h]),
    url,
  ]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = ms(/\s50%\s+(\S+)/.exec(out)?.[1]);
  const p99 = ms(/\s99%\s+(\S+)/.exec(out)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return { rps, p50, p99, errors };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:metadata needs root (bridges, namespaces, nftables)');
  const prefix = uniquePrefix();
  const dir = mkdtempSync(join(tmpdir(), 'bench-md-'));
  const procs: ChildProcess[] = [];
  const cleanup = async () => {
    // SIGTERM and wait: a SIGKILLed nginx master leaves its worker behind.
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            const timer = setTimeout(() => {
              p.kill('SIGKILL');
              resolve();
            }, 3000);
            p.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            p.kill('SIGTERM');
          }),
      ),
    );
    removePrefixed(prefix);
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    void cleanup().then(() => process.exit(130));
  });
  try {
    const config = join(dir, 'berthd.yaml');
    writeFileSync(
      config,
      `name_prefix: ${prefix}\nlog_level: warn\nnetworks: [{name: mdb, subnet: 10.92.0.0/24}]\n`,
    );
    const socket = join(dir, 'berthd.sock');
    const berthd = spawn(
      process.execPath,
      [BERTHD, '--config', config, '--state-dir', join(dir, 'state'), '--socket', socket],
      {
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    procs.push(berthd);
    const client = new BerthClient(socket, 30_000);
    for (let i = 0; ; i++) {
      try {
        await client.status();
        break;
      } catch {
        if (i > 300) throw new Error('berthd did not start');
        await sleep(50);
      }
    }
    const inst = await client.createInstance({ name: 'b0', network: 'mdb', runtime: 'netns' });
    const nic = inst.nics[0];
    if (!nic || !inst.netns) throw new Error('instance has no NIC');
    const guest = inst.netns;
    await client.exec('b0', ['ip', 'addr', 'add', `${nic.ip}/24`, 'dev', 'eth0']);
    await client.exec('b0', ['ip', 'route', 'add', '169.254.169.254', 'dev', 'eth0']);
    const endpoint = (await client.network('mdb')).endpoint;
    const body = inst.id;

    // The bare fastify route, in the endpoint's namespace.
    const bare = join(dir, 'bare.mjs');
    writeFileSync(
      bare,
      `import Fastify from ${JSON.stringify(join(ROOT, 'node_modules/fastify/fastify.js'))};
const app = Fastify({ logger: false });
app.get(${JSON.stringify(PATH)}, async (_req, reply) => reply.header('content-type', 'text/plain').send(${JSON.stringify(body)}));
await app.listen({ host: '169.254.169.254', port: 8080 });
`,
    );
    procs.push(
      spawn('ip', ['netns', 'exec', endpoint, process.execPath, bare], {
        stdio: ['ignore', 'ignore', 'inherit'],
      }),
    );

    // nginx: the same bytes as a static file, one worker.
    const www = join(dir, 'www');
    mkdirSync(join(www, 'latest/meta-data'), { recursive: true });
    writeFileSync(join(www, PATH), body);
    const nginxConf = join(dir, 'nginx.conf');
    writeFileSync(
      nginxConf,
      `worker_processes 1;
user root;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'nginx.err')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  keepalive_requests 1000000;
  server { listen 169.254.169.254:8081; root ${www}; }
}
`,
    );
    procs.push(
      spawn('ip', ['netns', 'exec', endpoint, 'nginx', '-c', nginxConf], {
        stdio: ['ignore', 'ignore', 'inherit'],
      }),
    );
    await sleep(1500);

    // Every server answers the same bytes before anything is measured.
    const token = sh('ip', [
      'netns',
      'exec',
      guest,
      'curl',
      '-s',
      '-X',
      'PUT',
      '-H',
      'X-aws-ec2-metadata-token-ttl-seconds: 21600',
      'http://169.254.169.254/latest/api/token',
    ]);
    for (const port of [80, 8080, 8081]) {
      const got = sh('ip', ['netns', 'exec', guest, 'curl', '-s', `http://169.254.169.254:${port}${PATH}`]);
      if (got !== body) throw new Error(`port ${port} answered "${got}", not "${body}"`);
    }

    const loadStart = loadavg()[0] ?? 0;
    const sides = {
      berth: () => wrk(guest, `http://169.254.169.254${PATH}`),
      'berth+token': () =>
        wrk(guest, `http://169.254.169.254${PATH}`, [`X-aws-ec2-metadata-token: ${token}`]),
      fastify: () => wrk(guest, `http://169.254.169.254:8080${PATH}`),
      nginx: () => wrk(guest, `http://169.254.169.254:8081${PATH}`),
    } as const;
    type Side = keyof typeof sides;
    const r: Record<Side, WrkResult[]> = { berth: [], 'berth+token': [], fastify: [], nginx: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of Object.keys(sides) as Side[]) {
        const x = sides[name]();
        r[name].push(x);
        console.log(
          `round ${round + 1} ${name}: ${x.rps.toFixed(0)} req/s, p50 ${x.p50.toFixed(2)} ms, p99 ${x.p99.toFixed(2)} ms, errors ${x.errors}`,
        );
        await sleep(500);
      }
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const m = (s: Side) => ({
      rps: med(r[s].map((x) => x.rps)),
      p50: med(r[s].map((x) => x.p50)),
      p99: med(r[s].map((x) => x.p99)),
      errors: r[s].reduce((a, x) => a + x.errors, 0),
    });
    const base = m('fastify');
    const rows = (Object.keys(sides) as Side[]).map((s) => {
      const x = m(s);
      return `| ${s} | ${x.rps.toFixed(0)} | ${(x.rps / base.rps).toFixed(2)} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} | ${x.errors} |`;
    });
    const berth = m('berth');
    const ratio = berth.rps / base.rps;
    // Under a noisy host the round-by-round ratio (berth and fastify measured seconds apart) is steadier.
    const paired = med(r.berth.map((x, i) => x.rps / (r.fastify[i]?.rps ?? Number.NaN)));
    const verdict = `berth/fastify throughput ${ratio.toFixed(2)} (median of per-round ratios ${paired.toFixed(2)}; bar >= 0.8: ${ratio >= 0.8 && paired >= 0.8 ? 'met' : 'NOT met'}); berth p99 ${berth.p99.toFixed(2)} ms (bar <= 5 ms: ${berth.p99 <= 5 ? 'met' : 'NOT met'}; fastify p99 ${base.p99.toFixed(2)} ms, nginx p99 ${m('nginx').p99.toFixed(2)} ms)`;
    console.log(verdict);
    // nginx -v writes to stderr.
    const nginxVersion = spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr.trim();
    const section = [
      '## Metadata: berth vs a bare fastify route vs nginx (`bench/metadata.ts`)',
      '',
      `Measured ${new Date().toISOString().slice(0, 10)} on this host (2 cores, ${process.version}${nginxVersion ? `, ${nginxVersion}` : ''}); median of ${ROUNDS} rounds of ${DURATION} s, servers alternating.`,
      `Client: wrk -t1 -c${CONNECTIONS} inside a netns guest, through the bridge and the guard, to \`${PATH}\` (the same ${body.length} bytes from every server). The client shares the 2 cores with the server.`,
      '',
      '| server | req/s | vs fastify | p50 ms | p99 ms | errors |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows,
      '',
      verdict,
      '',
      `Load average (1 min) when measuring started: ${loadStart.toFixed(2)}; when it ended: ${loadavg()[0]?.toFixed(2)} (2 cores, other work on the host is not stopped; rounds vary with it, so compare servers within a run).`,
    ].join('\n');
    let text = '';
    try {
      text = readFileSync(RESULTS, 'utf8');
    } catch {
      text = '# Benchmark results\n';
    }
    const start = '<!-- bench:metadata:start -->';
    const end = '<!-- bench:metadata:end -->';
    const block = `${start}\n${section}\n${end}`;
    const re = new RegExp(`${start}[\\s\\S]*?${end}`);
    text = re.test(text) ? text.replace(re, block) : `${text.trimEnd()}\n\n${block}\n`;
    writeFileSync(RESULTS, text);
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
