// berthd under exactly the capability bounding set of systemd/berthd.service
// (setpriv, as systemd's CapabilityBoundingSet= would): a network, an endpoint
// and a netns guest that gets its lease, pings and reads metadata. Then each of
// three capabilities taken away breaks what the unit's comment says it is for.
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { groupId } from '../../agent/api/unix-socket.js';
import { BerthClient } from '../../agent/client/client.js';
import { BERTHD, ROOT, removePrefixed, tempDir, uniquePrefix, writeTestConfig } from '../helpers/berthd.js';

async function unitCaps(): Promise<string[]> {
  const unit = await readFile(join(ROOT, 'systemd/berthd.service'), 'utf8');
  const line = /^CapabilityBoundingSet=(.+)$/m.exec(unit)?.[1] ?? '';
  return line.split(/\s+/).map((c) => c.replace(/^CAP_/, '').toLowerCase());
}

async function startCapped(t: Test, caps: string[], prefix: string, extra: string) {
  const dir = await tempDir(t, 'op-caps');
  const socket = join(dir, 's.sock');
  const config = await writeTestConfig(dir, prefix, `metrics:\n  listen: ""\n${extra}`);
  const proc = spawn(
    'setpriv',
    [
      `--bounding-set=-all,${caps.map((c) => `+${c}`).join(',')}`,
      '--',
      process.execPath,
      BERTHD,
      '--config',
      config,
      '--state-dir',
      join(dir, 'state'),
      '--socket',
      socket,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => {
    stderr += c;
  });
  const exited = new Promise<number | null>((r) => proc.on('exit', r));
  t.teardown(async () => {
    proc.kill('SIGKILL');
    await exited;
  });
  return { proc, socket, exited, stderr: () => stderr, client: new BerthClient(socket, 10_000) };
}

async function until(what: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await what()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

const NET = (subnet: string) => `networks:\n  - name: opc\n    subnet: ${subnet}\n`;

t.test("the unit's capabilities are enough for a network and a netns guest", async (t) => {
  const caps = await unitCaps();
  t.same(caps.sort(), ['chown', 'net_admin', 'net_bind_service', 'net_raw', 'sys_admin']);
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const b = await startCapped(t, caps, prefix, NET('10.251.10.0/24'));
  t.ok(
    await until(
      () =>
        b.client.status().then(
          () => true,
          () => false,
        ),
      20_000,
    ),
    b.stderr(),
  );
  const gid = await groupId('berth');
  if (gid !== undefined) t.equal(statSync(b.socket).gid, gid, 'socket handed to group berth (CAP_CHOWN)');
  await b.client.createInstance({ name: 'opc1', network: 'opc', runtime: 'netns' });
  const ok = async (argv: string[]) => {
    const r = await b.client.exec('opc1', argv);
    t.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  // udhcpc opens an AF_PACKET socket (CAP_NET_RAW); the endpoint answers on UDP 67.
  await ok(['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '5']);
  await ok(['ping', '-c', '1', '-W', '2', '10.251.10.254']);
  await ok(['ip', 'route', 'add', '169.254.169.254', 'dev', 'eth0']);
  t.match(await ok(['curl', '-s', '-m', '5', 'http://169.254.169.254/latest/meta-data/instance-id']), /^i-/);
  await b.client.deleteInstance('opc1');
  b.proc.kill('SIGTERM');
  t.equal(await b.exited, 0, 'exit 0 after SIGTERM');
});

t.test('without CAP_NET_RAW a DHCP client in a netns guest cannot open its packet socket', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const caps = (await unitCaps()).filter((c) => c !== 'net_raw');
  const b = await startCapped(t, caps, prefix, NET('10.251.13.0/24'));
  t.ok(
    await until(
      () =>
        b.client.status().then(
          () => true,
          () => false,
        ),
      20_000,
    ),
    'berthd answers',
  );
  await b.client.createInstance({ name: 'opc2', network: 'opc', runtime: 'netns' });
  const r = await b.client.exec('opc2', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '2']);
  t.not(r.code, 0);
  t.match(r.stderr, /Operation not permitted/);
  await b.client.deleteInstance('opc2');
});

t.test('without CAP_NET_BIND_SERVICE the endpoint cannot bind UDP 67', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const caps = (await unitCaps()).filter((c) => c !== 'net_bind_service');
  const b = await startCapped(t, caps, prefix, NET('10.251.11.0/24'));
  const seen = await until(() => /bind EACCES [^"]*:67/.test(b.stderr()), 20_000);
  t.ok(seen, 'bind EACCES on UDP 67');
  if (!seen) t.comment(b.stderr());
});

t.test('without CAP_SYS_ADMIN the endpoint namespace cannot be made or entered', async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const caps = (await unitCaps()).filter((c) => c !== 'sys_admin');
  const b = await startCapped(t, caps, prefix, NET('10.251.12.0/24'));
  const seen = await until(() => /(namespace|mount)[^\n]*Operation not permitted/.test(b.stderr()), 20_000);
  t.ok(seen, 'ip netns: Operation not permitted');
  if (!seen) t.comment(b.stderr());
});

t.test('without CAP_CHOWN berthd cannot hand its socket to group berth and does not start', async (t) => {
  if ((await groupId('berth')) === undefined) {
    t.fail('group berth is missing: run scripts/provision.sh');
    return;
  }
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const caps = (await unitCaps()).filter((c) => c !== 'chown');
  const b = await startCapped(t, caps, prefix, 'networks: []\n');
  t.equal(await b.exited, 1);
  t.match(b.stderr(), /EPERM/);
});
