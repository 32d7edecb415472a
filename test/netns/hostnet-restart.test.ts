// Acceptance (hostnet): restarting berthd (SIGTERM, then a new berthd on the same
// state dir and socket) leaves the data path alone: a ping running through the
// restart loses nothing, and no nft rule handle nor bridge ifindex changes.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { removePrefixed, tempDir, uniquePrefix } from '../helpers/berthd.js';
import { ifindex, isRoot, type Lab, sh, startLab } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

interface NftObject {
  [kind: string]: { name?: string; chain?: string; handle?: number; elem?: unknown[] };
}

/** Every object in the guard table with its handle, e.g. "rule port_x #12"; map elements too. */
async function guardHandles(lab: Lab): Promise<string[]> {
  const out = JSON.parse(await sh('nft', ['-a', '-j', 'list', 'table', 'bridge', lab.guardTable()])) as {
    nftables: NftObject[];
  };
  const seen: string[] = [];
  for (const entry of out.nftables) {
    const [kind, o] = Object.entries(entry)[0] as [string, NftObject[string]];
    if (kind === 'metainfo') continue;
    seen.push(`${kind} ${o.chain ?? o.name} #${o.handle}`);
    if (o.elem) seen.push(`${kind} ${o.name} elements ${JSON.stringify(o.elem)}`);
  }
  return seen.sort();
}

async function linkIndexes(names: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = await ifindex(n);
  return out;
}

t.test('a berthd restart drops no ping and changes no rule handle or ifindex', async (t) => {
  const dir = await tempDir(t, 'hostnet-restart');
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const where = { prefix, stateDir: join(dir, 'state'), socket: join(dir, 'berthd.sock') };
  const lab = await startLab(t, where);
  const net = await lab.network('a', '10.71.0.0/24');
  const [g1, g2] = await Promise.all([lab.guest('g1', 'a'), lab.guest('g2', 'a')]);
  t.ok(await lab.ping('g1', g2.ip), 'g1 reaches g2 before the restart');

  const links = [net.bridge, g1.port, g2.port];
  const handlesBefore = await guardHandles(lab);
  const indexesBefore = await linkIndexes(links);
  t.ok(
    handlesBefore.some((h) => h.startsWith(`chain port_${g1.port} `)),
    `the guard has g1's chain (${handlesBefore.length} objects)`,
  );

  // Run by the test, not by berthd: the guest's traffic must not depend on berthd being up.
  const count = 30;
  const ping = spawn(
    'ip',
    ['netns', 'exec', g1.netns, 'ping', '-n', '-i', '0.2', '-c', String(count), g2.ip],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  ping.stdout.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const pingDone = new Promise<number | null>((resolve) => ping.on('exit', resolve));
  t.teardown(() => {
    if (ping.exitCode === null) ping.kill();
  });

  await new Promise((r) => setTimeout(r, 1000));
  t.equal(await lab.d.stop(), 0, 'berthd stops on SIGTERM with exit 0');
  t.match(lab.d.stderr(), /stopping; guests keep running/);
  const again = await startLab(t, where);
  t.equal(await pingDone, 0, 'ping exits 0');
  t.match(output, `${count} packets transmitted, ${count} received, 0% packet loss`, 'no ping was lost');

  t.same(await guardHandles(again), handlesBefore, 'every guard table object keeps its handle');
  t.same(await linkIndexes(links), indexesBefore, 'bridge and ports keep their ifindex');
  const list = await again.json<{ name: string; state: string }[]>(['instance', 'list']);
  t.same(
    list.map((i) => [i.name, i.state]),
    [
      ['g1', 'running'],
      ['g2', 'running'],
    ],
    'the new berthd knows both guests',
  );
  t.ok(await again.ping('g2', g1.ip), 'and they still talk');
});
