// Acceptance (operations): two berthd restarts in a row leave guests alone.
// A ping between two guests runs through both and loses nothing; a guest
// polls its metadata every 100 ms and is never without an answer for more
// than 2 s, and a token taken before the restarts is honoured after. The
// endpoint process is adopted by each new berthd, not restarted, and each new
// berthd decides the first request after it starts (adoption empties the
// endpoint's cache), so the poll also proves the new berthd serves.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Network } from '../../agent/api/types.js';
import { removePrefixed, tempDir, uniquePrefix } from '../helpers/berthd.js';
import { isRoot, type Lab, sh, startLab } from '../helpers/hostnet_lab.js';
import { curl, MD, mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const POLL = `while :; do
  r=$(curl -s -m 2 -w ' %{http_code}' ${MD}/latest/meta-data/instance-id)
  echo "$(date +%s%3N) $r"
  sleep 0.1
done`;

/** Starts a poller in netns; stop() returns [ms, ok] per answer. */
function poll(netns: string, want: string) {
  const proc = spawn('ip', ['netns', 'exec', netns, 'sh', '-c', POLL], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  return {
    stop(): { at: number; ok: boolean }[] {
      proc.kill('SIGKILL');
      return out
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => {
          const [at, body, code] = l.split(' ');
          return { at: Number(at), ok: code === '200' && body === want };
        });
    },
  };
}

/** The longest stretch (ms) between two successful answers. */
function longestGap(samples: { at: number; ok: boolean }[]): number {
  let last: number | undefined;
  let gap = 0;
  for (const s of samples) {
    if (!s.ok) continue;
    if (last !== undefined) gap = Math.max(gap, s.at - last);
    last = s.at;
  }
  return gap;
}

/** The endpoint process of network (its namespace also holds berthd's neighbour monitor). */
async function endpointPid(lab: Lab, network: string): Promise<string | undefined> {
  const net = await lab.json<Network>(['network', 'show', network]);
  for (const pid of (await sh('ip', ['netns', 'pids', net.endpoint])).split('\n').filter(Boolean)) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('endpoint/main.js')) return pid;
  }
  return undefined;
}

t.test('two restarts: no ping lost, metadata never gone for more than 2 s', async (t) => {
  const dir = await tempDir(t, 'restart-md');
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const where = { prefix, stateDir: join(dir, 'state'), socket: join(dir, 'berthd.sock') };
  let lab = await startLab(t, where);
  await lab.network('a', '10.73.0.0/24');
  const g1 = await mdGuest(lab, 'g1', 'a');
  const g2 = await mdGuest(lab, 'g2', 'a');
  const token = await curl(g2.netns, '/latest/api/token', [
    '-X',
    'PUT',
    '-H',
    'X-aws-ec2-metadata-token-ttl-seconds: 600',
  ]);
  t.equal(token.status, 200, 'g2 holds an IMDSv2 token from the first berthd');
  const pid = await endpointPid(lab, 'a');
  t.ok(pid, `the endpoint runs (pid ${pid})`);

  const ping = spawn('ip', ['netns', 'exec', g1.netns, 'ping', '-n', '-i', '0.1', g2.ip], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let pingOut = '';
  ping.stdout.on('data', (c: Buffer) => {
    pingOut += c.toString();
  });
  const pingDone = new Promise((resolve) => ping.on('exit', resolve));
  t.teardown(() => {
    if (ping.exitCode === null) ping.kill('SIGKILL');
  });
  const poller = poll(g1.netns, g1.id);
  await new Promise((r) => setTimeout(r, 1500));

  for (const round of [1, 2]) {
    t.equal(await lab.d.stop(), 0, `restart ${round}: berthd stops with exit 0`);
    lab = await startLab(t, where);
    const d = lab.d;
    const deadline = Date.now() + 10_000;
    while (!/endpoint adopted/.test(d.stderr()) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    if (!t.match(d.stderr(), /endpoint adopted/, `restart ${round}: the new berthd adopted the endpoint`))
      t.comment(
        d
          .stderr()
          .split('\n')
          .filter((l) => l.includes('endpoint'))
          .join('\n'),
      );
    t.match(
      (await d.client.status()).endpoints,
      [{ network: 'a', pid: Number(pid), ready: true, adopted: true }],
      `restart ${round}: berthctl status shows the endpoint adopted`,
    );
    await new Promise((r) => setTimeout(r, 1500));
  }

  const samples = poller.stop();
  ping.kill('SIGINT'); // ping prints its totals on SIGINT
  await pingDone;
  const sent = Number(/(\d+) packets transmitted/.exec(pingOut)?.[1]);
  const received = Number(/(\d+) received/.exec(pingOut)?.[1]);
  t.ok(sent > 30, `ping ran through both restarts (${sent} sent)`);
  t.equal(received, sent, 'no ping was lost');
  t.ok(samples.length > 20, `metadata was polled ${samples.length} times`);
  t.ok(samples.at(-1)?.ok, 'the last poll was answered');
  const gap = longestGap(samples);
  t.ok(gap <= 2000, `metadata was never gone for more than 2 s (longest gap ${gap} ms)`);
  const withToken = await curl(g2.netns, '/latest/meta-data/instance-id', [
    '-H',
    `X-aws-ec2-metadata-token: ${token.body}`,
  ]);
  t.same([withToken.status, withToken.body], [200, g2.id], 'the token is still good after two restarts');
  t.equal(await endpointPid(lab, 'a'), pid, 'the same endpoint process served throughout');
});
