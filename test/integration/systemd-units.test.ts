// The systemd unit and the install path: install-service.sh lays out a
// package under DESTDIR, systemd-analyze accepts the unit against that layout,
// sysusers/tmpfiles accept their files, and the installed tree runs berthd
// with production dependencies only. Also `vagrant validate` on the Vagrantfile.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { BerthClient } from '../../agent/client/client.js';
import { ROOT, removePrefixed, tempDir, uniquePrefix, writeTestConfig } from '../helpers/berthd.js';

const run = promisify(execFile);
const UNIT = join(ROOT, 'systemd/berthd.service');

async function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  try {
    const r = await run(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** sha256 of every file under dir except node_modules, by relative path. */
async function digest(dir: string, rel = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const p = join(rel, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules') Object.assign(out, await digest(dir, p));
    } else if (e.isFile()) {
      out[p] = createHash('sha256')
        .update(await readFile(join(dir, p)))
        .digest('hex');
    }
  }
  return out;
}

t.test('install-service.sh with DESTDIR lays out the package, idempotently', async (t) => {
  const dest = await tempDir(t, 'op-dest');
  const first = await sh('bash', ['scripts/install-service.sh'], { DESTDIR: dest });
  t.equal(first.code, 0, first.stderr);
  for (const [file, mode] of [
    ['usr/bin/berthd', 0o755],
    ['usr/bin/berthctl', 0o755],
    ['usr/lib/systemd/system/berthd.service', 0o644],
    ['usr/lib/sysusers.d/berth.conf', 0o644],
    ['usr/lib/tmpfiles.d/berth.conf', 0o644],
    ['etc/berth/berthd.yaml.example', 0o644],
    ['etc/dbus-1/system.d/berth-libvirt-dbus.conf', 0o644],
    ['usr/lib/berth/package.json', 0o644],
    ['usr/lib/berth/dist/agent/daemon/main.js', undefined],
    ['usr/lib/berth/dist/agent/endpoint/main.js', undefined],
  ] as const) {
    const st = await stat(join(dest, file)).catch(() => undefined);
    t.ok(st?.isFile(), `${file} installed`);
    if (mode !== undefined) t.equal((st?.mode ?? 0) & 0o777, mode, `${file} mode`);
  }
  t.notOk(
    await stat(join(dest, 'etc/berth/berthd.yaml')).catch(() => undefined),
    'berthd.yaml is never written',
  );
  t.match(
    await readFile(join(dest, 'usr/bin/berthd'), 'utf8'),
    /exec \S+node \/usr\/lib\/berth\/dist\/agent\/daemon\/main\.js "\$@"/,
  );
  t.equal(
    await readFile(join(dest, 'usr/lib/systemd/system/berthd.service'), 'utf8'),
    await readFile(UNIT, 'utf8'),
  );
  t.equal(
    await readFile(join(dest, 'etc/dbus-1/system.d/berth-libvirt-dbus.conf'), 'utf8'),
    await readFile(join(ROOT, 'systemd/berth-libvirt-dbus.conf'), 'utf8'),
    'the same D-Bus policy scripts/libvirt-up.sh installs',
  );
  const modules = await readdir(join(dest, 'usr/lib/berth/node_modules'));
  t.ok(modules.includes('fastify') && modules.includes('prom-client'), 'production dependencies copied');
  t.notOk(modules.includes('tap') || modules.includes('typescript'), 'no dev dependencies');

  const before = await digest(dest);
  const started = Date.now();
  const second = await sh('bash', ['scripts/install-service.sh'], { DESTDIR: dest });
  t.equal(second.code, 0, second.stderr);
  t.notMatch(
    second.stderr,
    /copying production node_modules/,
    'node_modules kept when the lockfile did not change',
  );
  t.same(await digest(dest), before, 'a second run leaves the same files');
  t.ok(Date.now() - started < 20_000);

  t.test('systemd-analyze verify accepts the unit against the installed layout', async (t) => {
    // verify needs ExecStart to exist: point the unit (its only change) at the DESTDIR wrapper.
    const dir = await tempDir(t, 'op-unit');
    const text = await readFile(UNIT, 'utf8');
    t.equal(text.match(/^ExecStart=\/usr\/bin\/berthd$/gm)?.length, 1);
    const installed = text.replace(/^ExecStart=\/usr\/bin\/berthd$/m, `ExecStart=${dest}/usr/bin/berthd`);
    await writeFile(join(dir, 'berthd.service'), installed);
    const v = await sh('systemd-analyze', ['verify', join(dir, 'berthd.service')]);
    t.equal(v.code, 0, v.stderr);
    t.equal(`${v.stdout}${v.stderr}`.trim(), '', 'no warnings');
    // And verify does fail a broken unit (the check has teeth).
    await writeFile(
      join(dir, 'berthd.service'),
      installed.replace(/^KillMode=process$/m, 'KillMode=sometimes'),
    );
    const bad = await sh('systemd-analyze', ['verify', join(dir, 'berthd.service')]);
    t.match(`${bad.stdout}${bad.stderr}`, /kill mode/);
  });

  t.test('sysusers and tmpfiles accept their files', async (t) => {
    const root = await tempDir(t, 'op-root');
    const tmp = await sh('systemd-tmpfiles', [
      '--create',
      `--root=${root}`,
      join(ROOT, 'systemd/berth.tmpfiles'),
    ]);
    t.equal(tmp.code, 0, tmp.stderr);
    for (const [dir, mode] of [
      ['etc/berth', 0o755],
      ['var/lib/berth', 0o750],
      ['run/berth', 0o755],
      ['run/netns', 0o755],
    ] as const)
      t.equal(((await stat(join(root, dir))).mode & 0o777).toString(8), mode.toString(8), dir);
    const users = await sh('systemd-sysusers', ['--dry-run', join(ROOT, 'systemd/berth.sysusers')]);
    t.equal(users.code, 0, users.stderr);
  });

  t.test('the installed tree runs berthd with production dependencies only', async (t) => {
    const base = await tempDir(t, 'op-run');
    const socket = join(base, 's.sock');
    const prefix = uniquePrefix();
    t.teardown(() => removePrefixed(prefix));
    const config = await writeTestConfig(base, prefix, 'networks: []\nmetrics:\n  listen: ""\n');
    const { spawn } = await import('node:child_process');
    const proc = spawn(
      process.execPath,
      [
        join(dest, 'usr/lib/berth/dist/agent/daemon/main.js'),
        '--config',
        config,
        '--state-dir',
        join(base, 'state'),
        '--socket',
        socket,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], cwd: base },
    );
    let err = '';
    proc.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const exited = new Promise<number | null>((r) => proc.on('exit', r));
    t.teardown(() => {
      proc.kill('SIGKILL');
    });
    const client = new BerthClient(socket, 2000);
    let status: Awaited<ReturnType<BerthClient['status']>> | undefined;
    for (let i = 0; i < 150 && !status; i++) {
      status = await client.status().catch(() => undefined);
      if (!status) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(status, `installed berthd answers: ${err}`);
    t.equal(status?.version, JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version);
    proc.kill('SIGTERM');
    t.equal(await exited, 0);
  });
});

t.test('vagrant validate accepts the Vagrantfile (with the vagrant-libvirt plugin)', async (t) => {
  const home = await tempDir(t, 'op-vagrant');
  const env = { VAGRANT_HOME: home, VAGRANT_CHECKPOINT_DISABLE: '1' };
  const ok = await sh('vagrant', ['validate'], env);
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, /validated successfully/);
  const two = await sh('vagrant', ['validate'], { ...env, BERTH_HOSTS: '2' });
  t.equal(two.code, 0, two.stdout + two.stderr);
  const bad = await sh('vagrant', ['validate'], { ...env, BERTH_HOSTS: '0' });
  t.not(bad.code, 0, 'BERTH_HOSTS out of range is refused');
  t.match(bad.stdout + bad.stderr, /BERTH_HOSTS must be 1\.\.9/);
});
