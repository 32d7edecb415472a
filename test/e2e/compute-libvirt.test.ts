// The libvirt-dbus Hypervisor against real libvirtd + QEMU (TCG) and the
// real test guest. Every domain and bridge here carries the prefix "cm" and
// this process's pid; nothing else on the host is touched.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { domainXml } from '../../agent/compute/domain-xml.js';
import type { HypervisorEvent } from '../../agent/compute/hypervisor.js';
import { LibvirtDbus } from '../../agent/compute/libvirt-dbus.js';
import { detectVirtType } from '../../agent/compute/virt-type.js';
import { osCommandRunner } from '../../base/command.js';
import { ensureTestGuest, parseGuestLog } from '../../images/test-guest.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (libvirtd, QEMU, bridges)');
  process.exit(0);
}

const root = new URL('../..', import.meta.url).pathname;
const sh = (...argv: string[]) => osCommandRunner.run(argv, { timeoutMs: 120_000 });
const virsh = (...args: string[]) => sh('virsh', '-c', 'qemu:///system', ...args);
const tag = (process.pid % 100000).toString(36);
const bridge = `cm${tag}b`;
const dom = (suffix: string) => `cm-${tag}-${suffix}`;
const uuid = (n: number) =>
  `c0ffee00-0000-4000-8000-${(process.pid * 16 + n).toString(16).padStart(12, '0')}`;
const hex2 = (n: number) => (n & 0xff).toString(16).padStart(2, '0');
const mac = (n: number) => `0a:cc:${hex2(process.pid >> 8)}:${hex2(process.pid)}:00:${hex2(n)}`;

const created: string[] = [];
let work = '';
const hv = new LibvirtDbus({ heartbeatMs: 500 });
const events: (HypervisorEvent & { at: number })[] = [];

t.before(async () => {
  await sh('bash', join(root, 'scripts/libvirt-up.sh'));
  work = await mkdtemp(join(tmpdir(), 'cm-e2e-'));
  await sh('ip', 'link', 'add', bridge, 'type', 'bridge');
  await sh('ip', 'link', 'set', bridge, 'up');
  hv.onEvent((e) => events.push({ ...e, at: Date.now() }));
});

t.teardown(async () => {
  for (const name of created) {
    await virsh('destroy', name).catch(() => {});
    await virsh('undefine', name).catch(() => {});
  }
  await hv.close();
  await sh('ip', 'link', 'del', bridge).catch(() => {});
  if (work) await rm(work, { recursive: true, force: true });
});

async function waitFor<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  ms: number,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const eventFor = (uuid: string, kind: string, after = 0) =>
  events.find((e) => e.type === 'domain' && e.uuid === uuid && e.kind === kind && e.at >= after);

t.test('the test guest boots under libvirt: events, tap on the bridge, serial markers', async (t) => {
  const guest = await ensureTestGuest();
  const virt = await detectVirtType();
  t.comment(`virt type ${virt.type}: ${virt.reason}`);
  const name = dom('boot');
  const id = uuid(1);
  const log = join(work, 'boot.log');
  const port = `cm${tag}p1`;
  const xml = domainXml({
    name,
    uuid: id,
    virtType: virt.type,
    vcpus: 1,
    memoryMiB: 256,
    boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline },
    nics: [{ mac: mac(1), bridge, port }],
    serialLog: log,
    smbios: { kind: 'nocloud' },
    owner: { instanceId: 'i-cm0001', hostId: 'cm-host', prefix: 'cm' },
  });
  created.push(name);
  const definedAt = Date.now();
  t.equal(await hv.define(xml), id, 'define returns the domain uuid (= instance uuid)');
  await waitFor('Defined event', () => eventFor(id, 'defined', definedAt), 10_000);
  t.equal(await hv.state(name), 'shutoff');

  const startedAt = Date.now();
  await hv.start(name);
  const started = await waitFor('Started event', () => eventFor(id, 'started', startedAt), 10_000);
  t.equal(started.type === 'domain' && started.name, name, 'the event names the domain');
  t.equal(await hv.state(name), 'running');
  const link = JSON.parse((await sh('ip', '-j', 'link', 'show', 'dev', port)).stdout)[0];
  t.equal(link.master, bridge, 'the tap carries the port name and sits on the bridge');

  const stopped = await waitFor(
    'Stopped event (guest powered off)',
    () => eventFor(id, 'stopped', startedAt),
    90_000,
  );
  const report = parseGuestLog(await readFile(log, 'utf8'));
  t.comment(
    `start -> Started ${started.at - startedAt} ms, -> Stopped ${stopped.at - startedAt} ms; guest uptime init ${report.uptime.init} s, done ${report.uptime.done} s, lease ${report.lease}`,
  );
  t.ok(report.kernelBooted, 'kernel banner on the serial log');
  t.ok(report.initRan, 'the initramfs init ran');
  t.equal(report.mac, mac(1), 'the guest sees the assigned MAC');
  t.ok(report.lease, 'the guest reported its DHCP outcome');
  t.ok(report.done, 'the guest finished and powered off');
  t.equal(await hv.state(name), 'shutoff');
  t.equal(
    stopped.type === 'domain' && stopped.detail,
    0,
    'stopped by the guest (detail shutdown), not destroyed',
  );

  const undefinedAt = Date.now();
  await hv.undefine(name);
  await waitFor('Undefined event', () => eventFor(id, 'undefined', undefinedAt), 10_000);
  t.equal(await hv.state(name), undefined, 'gone');
  await hv.undefine(name);
  await hv.destroy(name);
  t.pass('undefine and destroy of a missing domain are success');
});

t.test(
  'the test guest against reference servers (dnsmasq, python http.server): lease, route, metadata',
  async (t) => {
    // berth's own DHCP and metadata are tested with this guest elsewhere; this pins the guest's side.
    const guest = await ensureTestGuest();
    const ns = `cm-${tag}-ref`;
    const veth = `cm${tag}r`;
    const meta = join(work, 'meta');
    t.teardown(async () => {
      await sh('ip', 'netns', 'pids', ns)
        .then(({ stdout }) =>
          Promise.all(
            stdout
              .split(/\s+/)
              .filter(Boolean)
              .map((p) => sh('kill', p).catch(() => {})),
          ),
        )
        .catch(() => {});
      await sh('ip', 'netns', 'del', ns).catch(() => {});
      await sh('ip', 'link', 'del', veth).catch(() => {});
    });
    await sh('mkdir', '-p', join(meta, 'latest/meta-data'));
    await sh(
      'sh',
      '-c',
      `printf i-cmref >${meta}/latest/meta-data/instance-id; printf '#cloud-config\\nhostname: ref' >${meta}/latest/user-data`,
    );
    await sh('ip', 'netns', 'add', ns);
    await sh('ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await sh('ip', 'link', 'set', veth, 'master', bridge, 'up');
    const inNs = (...argv: string[]) => sh('ip', 'netns', 'exec', ns, ...argv);
    await inNs('ip', 'addr', 'add', '10.99.0.1/24', 'dev', 'eth0');
    await inNs('ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'eth0');
    await inNs('ip', 'link', 'set', 'eth0', 'up');
    await inNs('ip', 'link', 'set', 'lo', 'up');
    await inNs(
      'dnsmasq',
      '--port=0',
      `--pid-file=${join(work, 'dnsmasq.pid')}`,
      '--interface=eth0',
      '--bind-interfaces',
      '--dhcp-range=10.99.0.10,10.99.0.20,255.255.255.0,1h',
      '--dhcp-option=121,169.254.169.254/32,10.99.0.1',
      `--dhcp-leasefile=${join(work, 'leases')}`,
    );
    await inNs(
      'sh',
      '-c',
      `cd ${meta} && setsid python3 -m http.server --bind 169.254.169.254 80 >/dev/null 2>&1 </dev/null &`,
    );
    await waitFor(
      'http.server',
      () =>
        inNs('curl', '-sf', 'http://169.254.169.254/latest/meta-data/instance-id').then(
          () => true,
          () => undefined,
        ),
      10_000,
    );

    const name = dom('ref');
    const id = uuid(5);
    const log = join(work, 'ref.log');
    created.push(name);
    await hv.define(
      domainXml({
        name,
        uuid: id,
        virtType: (await detectVirtType()).type,
        vcpus: 1,
        memoryMiB: 256,
        boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline },
        nics: [{ mac: mac(5), bridge, port: `cm${tag}p5` }],
        serialLog: log,
        smbios: { kind: 'nocloud' },
        owner: { instanceId: 'i-cmref', hostId: 'cm-host', prefix: 'cm' },
      }),
    );
    const startedAt = Date.now();
    await hv.start(name);
    const stopped = await waitFor('the guest to power off', () => eventFor(id, 'stopped', startedAt), 90_000);
    const r = parseGuestLog(await readFile(log, 'utf8'));
    t.comment(
      `start -> Stopped ${stopped.at - startedAt} ms; guest uptime init ${r.uptime.init} s, lease ${r.uptime.lease} s, done ${r.uptime.done} s`,
    );
    t.match(r.lease, /^10\.99\.0\.(1\d|20)$/, 'a lease from the range');
    t.equal(r.route169, 'staticroutes', 'option 121 routed 169.254.169.254');
    t.equal(r.instanceId, 'i-cmref');
    t.equal(r.userData, '#cloud-config\nhostname: ref');
    await hv.undefine(name);
  },
);

/** A domain on an empty qcow2 overlay: SeaBIOS finds nothing to boot and keeps running. */
async function idleXml(name: string, id: string, n: number, owned: boolean): Promise<string> {
  const base = join(work, `${name}-base.raw`);
  const disk = join(work, `${name}.qcow2`);
  await sh('qemu-img', 'create', '-q', '-f', 'raw', base, '1M');
  await sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', disk);
  const xml = domainXml({
    name,
    uuid: id,
    virtType: 'qemu',
    vcpus: 1,
    memoryMiB: 32,
    boot: { kind: 'disk', disk },
    nics: [{ mac: mac(n), bridge, port: `cm${tag}p${n}` }],
    serialLog: join(work, `${name}.log`),
    smbios: { kind: 'openstack' },
    owner: { instanceId: `i-cm${n}`, hostId: 'cm-host', prefix: 'cm' },
  });
  return owned ? xml : xml.replace(/ {2}<metadata>[\s\S]*<\/metadata>\n/, '');
}

t.test('list: berth-tagged domains only when asked; macs() sees every domain', async (t) => {
  const mine = dom('own');
  const foreign = dom('plain');
  created.push(mine, foreign);
  await hv.define(await idleXml(mine, uuid(2), 2, true));
  await hv.define(await idleXml(foreign, uuid(3), 3, false));
  const all = await hv.list();
  t.ok(
    all.find((d) => d.name === foreign && !d.owner),
    'an untagged domain is listed without an owner',
  );
  const owned = await hv.list({ owned: true });
  t.notOk(
    owned.find((d) => d.name === foreign),
    'not among the owned',
  );
  const own = owned.find((d) => d.name === mine);
  t.same(own?.owner, { instanceId: 'i-cm2', hostId: 'cm-host', prefix: 'cm' }, 'the tag reads back');
  t.same(own?.macs, [mac(2)]);
  t.equal(own?.state, 'shutoff');
  t.notOk(
    (await hv.list({ prefix: 'zz' })).find((d) => d.name === mine),
    'another prefix does not adopt it',
  );
  const macs = await hv.macs();
  t.ok(macs.has(mac(2)) && macs.has(mac(3)), "MACs of berth's and of foreign domains");
  await hv.undefine(mine);
  await hv.undefine(foreign);
});

t.test('libvirtd restarts while a domain runs: the domain survives, events resume', async (t) => {
  const name = dom('idle');
  const id = uuid(4);
  created.push(name);
  await hv.define(await idleXml(name, id, 4, true));
  const startedAt = Date.now();
  await hv.start(name);
  await waitFor('Started event', () => eventFor(id, 'started', startedAt), 10_000);
  const qemuPid = (await sh('cat', `/run/libvirt/qemu/${name}.pid`)).stdout.trim();

  const restartAt = Date.now();
  const libvirtdPid = (await readFile('/run/libvirtd.pid', 'utf8')).trim();
  await sh('kill', libvirtdPid);
  await waitFor(
    'libvirtd to exit',
    async () =>
      !(await sh('kill', '-0', libvirtdPid).then(
        () => true,
        () => false,
      )) || undefined,
    30_000,
  );
  await sh('bash', join(root, 'scripts/libvirt-up.sh'));
  await waitFor(
    'resync after the restart',
    () => events.find((e) => e.type === 'resync' && e.at >= restartAt),
    15_000,
  );
  t.equal(await hv.state(name), 'running', 'the guest kept running');
  t.equal((await sh('cat', `/run/libvirt/qemu/${name}.pid`)).stdout.trim(), qemuPid, 'same QEMU process');

  // Destroyed behind berth's back (virsh): the Stopped event still reaches the driver.
  const destroyAt = Date.now();
  await virsh('destroy', name);
  const stopped = await waitFor(
    'Stopped event after the restart',
    () => eventFor(id, 'stopped', destroyAt),
    15_000,
  );
  t.equal(stopped.type === 'domain' && stopped.detail, 1, 'detail destroyed');
  await hv.undefine(name);
});
