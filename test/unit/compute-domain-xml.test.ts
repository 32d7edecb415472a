// Domain XML from an instance spec: golden files pin the exact bytes, and
// libvirt's own schema (virt-xml-validate) accepts them.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import {
  BERTH_XMLNS,
  type DomainSpec,
  domainXml,
  parseMacs,
  parseOwner,
  xmlEscape,
} from '../../agent/compute/domain-xml.js';
import { bootOf } from '../../agent/services/libvirt-runtime.js';
import { osCommandRunner } from '../../base/command.js';

const golden = (name: string) => join(new URL('.', import.meta.url).pathname, 'golden', name);

const kernelSpec: DomainSpec = {
  name: 'bth-web1',
  uuid: '6f1c2a52-3b7e-4c1d-9a0e-1f2d3c4b5a69',
  virtType: 'qemu',
  vcpus: 1,
  memoryMiB: 256,
  boot: {
    kind: 'kernel',
    kernel: '/var/cache/berth/test-guest/k1/vmlinux',
    initrd: '/var/cache/berth/test-guest/k1/initrd.img',
    cmdline: 'console=ttyS0 loglevel=6 rdinit=/init',
  },
  nics: [{ mac: '0a:b7:e7:00:00:01', bridge: 'bthb1a2b3c', port: 'bthpdeadbeef0' }],
  serialLog: '/var/lib/berth/instances/i-deadbeef/serial.log',
  smbios: { kind: 'nocloud' },
  owner: { instanceId: 'i-deadbeef', hostId: 'hv-01', prefix: 'bth' },
};

const diskSpec: DomainSpec = {
  name: 'bth-db2',
  uuid: '0d9e8f7a-6b5c-4d3e-8f21-0a1b2c3d4e5f',
  virtType: 'kvm',
  vcpus: 4,
  memoryMiB: 4096,
  boot: { kind: 'disk', disk: '/var/lib/berth/instances/i-0badf00d/root.qcow2' },
  nics: [
    { mac: '0a:b7:e7:00:00:02', bridge: 'bthb1a2b3c', port: 'bthp0badf00d0', mtu: 9000 },
    { mac: '0a:b7:e7:00:00:03', bridge: 'bthb9f8e7d', port: 'bthp0badf00d1' },
  ],
  serialLog: '/var/lib/berth/instances/i-0badf00d/serial.log',
  smbios: { kind: 'openstack' },
  owner: { instanceId: 'i-0badf00d', hostId: 'hv-01', prefix: 'bth' },
  machine: 'q35',
};

// A disk image that carries its kernel (images/build-test-disk.sh): the
// overlay is vda, the kernel and initrd come from the store.
const diskKernelSpec: DomainSpec = {
  ...kernelSpec,
  name: 'bth-fc3',
  boot: bootOf(
    {
      kind: 'disk',
      sha256: 'ab'.repeat(32),
      disk: `/var/lib/berth/images/${'ab'.repeat(32)}/disk.qcow2`,
      format: 'qcow2',
      kernel: `/var/lib/berth/images/${'ab'.repeat(32)}/kernel`,
      initrd: `/var/lib/berth/images/${'ab'.repeat(32)}/initrd`,
      cmdline: 'console=ttyS0 root=/dev/vda rw',
    },
    '/var/lib/berth/instances/i-deadbeef/disk.qcow2',
  ),
};

t.test('golden: direct kernel boot, TCG, NoCloud serial', async (t) => {
  t.equal(domainXml(kernelSpec), await readFile(golden('compute-domain-kernel.xml'), 'utf8'));
});

t.test('golden: qcow2 overlay, KVM, two NICs, OpenStack product', async (t) => {
  t.equal(domainXml(diskSpec), await readFile(golden('compute-domain-disk.xml'), 'utf8'));
});

t.test('golden: a disk overlay booted by the kernel its image carries', async (t) => {
  t.equal(domainXml(diskKernelSpec), await readFile(golden('compute-domain-disk-kernel.xml'), 'utf8'));
});

t.test('bootOf: a disk boots by itself unless its image carries a kernel', async (t) => {
  const disk = { kind: 'disk', sha256: 'x', disk: '/i/disk.qcow2', format: 'qcow2' } as const;
  t.same(bootOf(disk, '/o.qcow2'), { kind: 'disk', disk: '/o.qcow2' });
  t.same(bootOf({ ...disk, kernel: '/i/kernel' }, '/o.qcow2'), {
    kind: 'kernel',
    kernel: '/i/kernel',
    disk: '/o.qcow2',
  });
  t.same(bootOf({ kind: 'kernel', sha256: 'x', kernel: '/k', cmdline: 'c' }, undefined), {
    kind: 'kernel',
    kernel: '/k',
    cmdline: 'c',
  });
});

t.test("libvirt's schema accepts the goldens", async (t) => {
  for (const f of [
    'compute-domain-kernel.xml',
    'compute-domain-disk.xml',
    'compute-domain-disk-kernel.xml',
  ]) {
    // Exit 0 means valid; the "validates" line goes to stderr.
    const { stdout, stderr } = await osCommandRunner.run(['virt-xml-validate', golden(f), 'domain']);
    t.match(stdout + stderr, /validates/, f);
  }
});

t.test('what each part says', async (t) => {
  const k = domainXml(kernelSpec);
  t.match(k, "<domain type='qemu'>");
  t.notMatch(k, 'host-passthrough', 'TCG gets no host CPU model');
  t.match(k, `<entry name='uuid'>${kernelSpec.uuid}</entry>`, 'SMBIOS uuid = instance uuid');
  t.match(k, `<uuid>${kernelSpec.uuid}</uuid>`, 'domain uuid = instance uuid (libvirt requires them equal)');
  t.match(k, "<entry name='serial'>ds=nocloud-net;s=http://169.254.169.254/nocloud/</entry>");
  t.match(k, "<smbios mode='sysinfo'/>");
  t.notMatch(k, '<disk', 'no disk without one');
  t.notMatch(k, "<boot dev='hd'/>", 'kernel boot needs no boot device');
  const custom = domainXml({ ...kernelSpec, smbios: { kind: 'nocloud', url: 'http://10.0.0.1/seed/' } });
  t.match(custom, 'ds=nocloud-net;s=http://10.0.0.1/seed/');
  const none = domainXml({ ...kernelSpec, smbios: { kind: 'none' } });
  t.notMatch(none, "name='serial'");
  t.notMatch(none, 'OpenStack');
  const kernelWithDisk = domainXml({
    ...kernelSpec,
    boot: { ...kernelSpec.boot, disk: '/d/x.qcow2' } as DomainSpec['boot'],
  });
  t.match(kernelWithDisk, "<source file='/d/x.qcow2'/>", 'a disk rides along with a kernel');
});

t.test('every value is escaped', async (t) => {
  t.equal(xmlEscape(`a<b>&"c'`), 'a&lt;b&gt;&amp;&quot;c&apos;');
  const hostile = domainXml({
    ...kernelSpec,
    name: "evil'><devices><disk>",
    boot: { kind: 'kernel', kernel: "/k'<x>", cmdline: 'a=1 & b="2" <c>' },
    serialLog: "/tmp/a'b",
    owner: { instanceId: 'i-<1>', hostId: "h'&", prefix: 'bth' },
  });
  t.notMatch(hostile, '<disk>', 'markup in a value never becomes an element');
  t.match(hostile, '<name>evil&apos;&gt;&lt;devices&gt;&lt;disk&gt;</name>');
  t.match(hostile, '<cmdline>a=1 &amp; b=&quot;2&quot; &lt;c&gt;</cmdline>');
  t.match(hostile, "<source path='/tmp/a&apos;b'/>");
  t.same(parseOwner(hostile), { instanceId: 'i-<1>', hostId: "h'&", prefix: 'bth' }, 'the tag round-trips');
});

t.test('bad specs are refused, naming the field', async (t) => {
  const bad: [Partial<DomainSpec>, RegExp][] = [
    [{ uuid: 'not-a-uuid' }, /uuid/],
    [{ uuid: kernelSpec.uuid.toUpperCase() }, /uuid/],
    [{ vcpus: 0 }, /vcpus/],
    [{ vcpus: 1.5 }, /vcpus/],
    [{ memoryMiB: 8 }, /memoryMiB/],
    [{ virtType: 'xen' as 'kvm' }, /virtType/],
    [{ nics: [{ mac: '0A:B7:E7:00:00:01', bridge: 'b', port: 'p' }] }, /nics\[0\]\.mac/],
    [
      { nics: [{ mac: '0a:b7:e7:00:00:01', bridge: 'b', port: 'a-name-that-is-too-long' }] },
      /nics\[0\]\.port/,
    ],
    [{ nics: [{ mac: '0a:b7:e7:00:00:01', bridge: 'b r', port: 'p' }] }, /nics\[0\]\.bridge/],
    [{ serialLog: 'relative.log' }, /serialLog/],
    [{ boot: { kind: 'disk', disk: 'root.qcow2' } }, /boot\.disk/],
    [{ boot: { kind: 'kernel', kernel: 'vmlinux' } }, /boot\.kernel/],
    [{ name: '' }, /name/],
  ];
  for (const [patch, re] of bad)
    t.throws(() => domainXml({ ...kernelSpec, ...patch }), re, JSON.stringify(patch));
});

t.test('parseOwner and parseMacs read what libvirt gives back', async (t) => {
  // libvirt re-serialises metadata with double quotes and its own indentation.
  const back = `<domain type="qemu"><name>x</name><metadata>
    <b:instance xmlns:b="${BERTH_XMLNS}">
      <b:id>i-1</b:id><b:host>hv</b:host><b:prefix>bth</b:prefix>
    </b:instance></metadata><devices>
    <interface type="bridge"><mac address="0A:B7:E7:00:00:09"/></interface>
    <interface type="bridge"><mac address="52:54:00:12:34:56"/></interface></devices></domain>`;
  t.same(parseOwner(back), { instanceId: 'i-1', hostId: 'hv', prefix: 'bth' });
  t.same(parseMacs(back), ['0a:b7:e7:00:00:09', '52:54:00:12:34:56']);
  t.equal(parseOwner('<domain><name>plain</name></domain>'), undefined, 'untagged: not ours');
  t.equal(
    parseOwner('<x:instance xmlns:x="https://example.com/other"><x:id>i</x:id></x:instance>'),
    undefined,
    "another namespace's instance element is not berth's",
  );
  t.equal(
    parseOwner(`<b:instance xmlns:b="${BERTH_XMLNS}"><b:id>i</b:id></b:instance>`),
    undefined,
    'incomplete tag',
  );
});
