// A stock Debian 12 guest, built from Debian's packages by debootstrap
// (images/build-debian-cloud.sh, cached) with nothing of berth's in it,
// boots under berth through libvirt (QEMU, TCG here). Its cloud-init finds
// berth by itself (the NoCloud seed in the SMBIOS serial berth's domain XML
// writes), sets the hostname, installs the SSH key and runs the user-data;
// then a netns guest on the same network logs in with that key, and only
// with that key.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Instance } from '../../agent/api/types.js';
import { ensureDebianCloud } from '../../images/debian-cloud.js';
import { berthctl } from '../helpers/berthd.js';
import { sh, startComputeLab, waitFor } from '../helpers/compute_lab.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (libvirtd, QEMU, bridges, debootstrap)');
  process.exit(0);
}
// A first build fetches ~300 packages; a full Debian boot under TCG takes minutes.
t.setTimeout(1_800_000);

const MARK = 'BERTH-CLOUD';

t.test('a stock Debian 12 guest: cloud-init configures it from berth, and the key logs in', async (t) => {
  const started = Date.now();
  const since = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
  const image = await ensureDebianCloud();
  t.comment(`image ready at ${since()}: ${image.dir}`);
  t.ok(
    image.packages.some((p) => p.startsWith('cloud-init=')),
    `built from Debian's packages (${image.packages.filter((p) => /^(cloud-init|linux-image-amd64)=/.test(p)).join(', ')})`,
  );
  const { d, network, prefix } = await startComputeLab(t);
  const env = { BERTH_SOCKET: d.socket };
  const dir = await mkdtemp(join(tmpdir(), `${prefix}-deb-`));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const k of ['key', 'other'])
    await sh('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `${k}@berth-test`, '-f', join(dir, k));
  // The user-data is cloud-init's to run: it reports on the serial console what it saw.
  await writeFile(
    join(dir, 'ud'),
    [
      '#cloud-config',
      'write_files:',
      '  - path: /run/berth-user-data',
      "    content: 'ran'",
      'runcmd:',
      `  - [sh, -c, 'echo "${MARK} hostname=$(hostname) user-data=$(cat /run/berth-user-data)" > /dev/ttyS0']`,
      '',
    ].join('\n'),
  );

  const imp = await berthctl(
    [
      ...['image', 'import', image.disk, '--name', 'debian12'],
      ...['--kernel', image.kernel, '--initrd', image.initrd, '--cmdline', image.cmdline, '--json'],
    ],
    env,
  );
  t.equal(imp.code, 0, imp.stderr);
  const made = await berthctl(
    [
      ...['instance', 'create', 'deb1', '--network', network, '--image', 'debian12', '--runtime', 'libvirt'],
      ...['--memory', '1024', '--ssh-key', join(dir, 'key.pub'), '--user-data', join(dir, 'ud'), '--json'],
    ],
    env,
  );
  t.equal(made.code, 0, made.stderr);
  const vm = JSON.parse(made.stdout) as Instance;
  const ip = vm.nics[0]?.ip as string;

  const log = () => readFile(vm.console_log as string, 'utf8').catch(() => '');
  const line = await waitFor(
    "cloud-init's run of the user-data on the serial console",
    async () => (await log()).split('\n').find((l) => l.startsWith(MARK)),
    900_000,
  ).catch(async (err: Error) => {
    t.comment((await log()).split('\n').slice(-60).join('\n'));
    throw err;
  });
  t.comment(`user-data ran at ${since()}: ${line.trim()}`);
  t.match(line, 'hostname=deb1', "cloud-init set the hostname from berth's meta-data");
  t.match(line, 'user-data=ran', 'and ran the user-data (write_files, then runcmd)');

  // A netns guest on the same network logs in with the key berth served.
  const client = JSON.parse(
    (
      await berthctl(
        ['instance', 'create', 'sshc', '--network', network, '--runtime', 'netns', '--json'],
        env,
      )
    ).stdout,
  ) as Instance;
  const cnic = client.nics[0] as Instance['nics'][number];
  await sh(
    'ip',
    'netns',
    'exec',
    client.netns as string,
    'ip',
    'addr',
    'add',
    `${cnic.ip}/24`,
    'dev',
    'eth0',
  );
  const ssh = (key: string, command: string) =>
    sh(
      ...['ip', 'netns', 'exec', client.netns as string, 'ssh', '-i', join(dir, key)],
      ...['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'],
      ...['-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', `debian@${ip}`, command],
    ).then(
      (r) => ({ ok: true, out: r.stdout }),
      (err: Error) => ({ ok: false, out: err.message }),
    );
  const login = await waitFor(
    'an SSH login with the key',
    async () => {
      const r = await ssh('key', 'hostname; cloud-init status --long; cat /run/cloud-init/result.json');
      return r.ok ? r : undefined;
    },
    300_000,
  );
  t.comment(`logged in at ${since()}`);
  t.match(login.out, /^deb1\n/, 'logged in as debian with the key; the host is deb1');
  t.match(login.out, 'status: done', "cloud-init's own status: done");
  t.match(
    login.out,
    /DataSourceNoCloudNet.*169\.254\.169\.254\/nocloud/,
    'found by itself: NoCloud from the SMBIOS seed',
  );
  const refused = await ssh('other', 'true');
  t.notOk(refused.ok, 'another key does not log in (control)');
  t.match(refused.out, /Permission denied/);
  t.equal((await d.client.instance('deb1')).state, 'running');
});
