// Instance spec -> libvirt domain XML. Pure: the same spec gives the same
// bytes, so golden tests pin what libvirt is asked to run. Every value that
// reaches the XML is escaped.

/** The namespace of berth's ownership tag in <metadata>; reconcile adopts only domains carrying it. */
export const BERTH_XMLNS = 'https://berth.dev/xmlns/domain/1';

export type VirtType = 'kvm' | 'qemu';

/** How cloud-init finds its datasource from SMBIOS: NoCloud's serial, or OpenStack's product name. */
export type SmbiosDatasource = { kind: 'nocloud'; url?: string } | { kind: 'openstack' } | { kind: 'none' };

export const DEFAULT_NOCLOUD_URL = 'http://169.254.169.254/nocloud/';

export interface DomainNic {
  mac: string;
  /** The network's bridge. */
  bridge: string;
  /** The tap's name, berth's port name: its guard exists before the tap does. */
  port: string;
  mtu?: number;
}

export type DomainBoot =
  /** A qcow2 overlay on the instance's image. */
  | { kind: 'disk'; disk: string }
  /** Direct kernel boot (the test guest); an optional disk rides along. */
  | { kind: 'kernel'; kernel: string; initrd?: string; cmdline?: string; disk?: string };

export interface DomainOwner {
  instanceId: string;
  hostId: string;
  /** berthd's name prefix: two berthds on one host never adopt each other's domains. */
  prefix: string;
}

export interface DomainSpec {
  /** libvirt's name for the domain; carries berth's prefix. */
  name: string;
  /** The instance uuid: domain uuid and SMBIOS system uuid. */
  uuid: string;
  virtType: VirtType;
  vcpus: number;
  memoryMiB: number;
  boot: DomainBoot;
  nics: DomainNic[];
  /** The guest's serial console (ttyS0) is written here. */
  serialLog: string;
  smbios: SmbiosDatasource;
  owner: DomainOwner;
  /** Machine type; 'pc' boots fastest and suits virtio guests. */
  machine?: string;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

export function xmlEscape(value: string | number): string {
  return String(value)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&apos;');
}

/** Throws on a spec libvirt would refuse or misread; the message names the field. */
export function checkDomainSpec(spec: DomainSpec): void {
  const bad = (field: string, why: string) => {
    throw new Error(`domain spec ${field}: ${why}`);
  };
  if (!spec.name || spec.name.length > 200 || spec.name.includes('/'))
    bad('name', `"${spec.name}" is not usable`);
  if (!UUID.test(spec.uuid)) bad('uuid', `"${spec.uuid}" is not a lower-case uuid`);
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > 256) bad('vcpus', 'must be 1..256');
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16) bad('memoryMiB', 'must be an integer >= 16');
  if (spec.virtType !== 'kvm' && spec.virtType !== 'qemu') bad('virtType', 'must be kvm or qemu');
  for (const [i, nic] of spec.nics.entries()) {
    if (!MAC.test(nic.mac)) bad(`nics[${i}].mac`, `"${nic.mac}" is not a lower-case MAC`);
    if (!IFNAME.test(nic.port)) bad(`nics[${i}].port`, `"${nic.port}" is not an interface name`);
    if (!IFNAME.test(nic.bridge)) bad(`nics[${i}].bridge`, `"${nic.bridge}" is not an interface name`);
  }
  if (!spec.serialLog.startsWith('/')) bad('serialLog', 'must be an absolute path');
  const disk = spec.boot.disk;
  if (disk !== undefined && !disk.startsWith('/')) bad('boot.disk', 'must be an absolute path');
  if (spec.boot.kind === 'kernel' && !spec.boot.kernel.startsWith('/'))
    bad('boot.kernel', 'must be an absolute path');
}

function smbiosXml(spec: DomainSpec): string[] {
  const entries: [string, string][] = [['manufacturer', 'berth']];
  if (spec.smbios.kind === 'openstack') entries.push(['product', 'OpenStack Compute']);
  else entries.push(['product', 'berth']);
  if (spec.smbios.kind === 'nocloud')
    entries.push(['serial', `ds=nocloud-net;s=${spec.smbios.url ?? DEFAULT_NOCLOUD_URL}`]);
  entries.push(['uuid', spec.uuid]);
  return [
    "  <sysinfo type='smbios'>",
    '    <system>',
    ...entries.map(([k, v]) => `      <entry name='${k}'>${xmlEscape(v)}</entry>`),
    '    </system>',
    '  </sysinfo>',
  ];
}

function osXml(spec: DomainSpec): string[] {
  const lines = ['  <os>', `    <type arch='x86_64' machine='${xmlEscape(spec.machine ?? 'pc')}'>hvm</type>`];
  if (spec.boot.kind === 'kernel') {
    lines.push(`    <kernel>${xmlEscape(spec.boot.kernel)}</kernel>`);
    if (spec.boot.initrd) lines.push(`    <initrd>${xmlEscape(spec.boot.initrd)}</initrd>`);
    if (spec.boot.cmdline) lines.push(`    <cmdline>${xmlEscape(spec.boot.cmdline)}</cmdline>`);
  } else {
    lines.push("    <boot dev='hd'/>");
  }
  lines.push("    <smbios mode='sysinfo'/>", '  </os>');
  return lines;
}

function diskXml(path: string): string[] {
  return [
    "    <disk type='file' device='disk'>",
    "      <driver name='qemu' type='qcow2' discard='unmap'/>",
    `      <source file='${xmlEscape(path)}'/>`,
    "      <target dev='vda' bus='virtio'/>",
    '    </disk>',
  ];
}

function nicXml(nic: DomainNic): string[] {
  return [
    "    <interface type='bridge'>",
    `      <mac address='${xmlEscape(nic.mac)}'/>`,
    `      <source bridge='${xmlEscape(nic.bridge)}'/>`,
    `      <target dev='${xmlEscape(nic.port)}'/>`,
    "      <model type='virtio'/>",
    ...(nic.mtu !== undefined ? [`      <mtu size='${xmlEscape(nic.mtu)}'/>`] : []),
    '    </interface>',
  ];
}

function metadataXml(owner: DomainOwner): string[] {
  return [
    '  <metadata>',
    `    <berth:instance xmlns:berth='${BERTH_XMLNS}'>`,
    `      <berth:id>${xmlEscape(owner.instanceId)}</berth:id>`,
    `      <berth:host>${xmlEscape(owner.hostId)}</berth:host>`,
    `      <berth:prefix>${xmlEscape(owner.prefix)}</berth:prefix>`,
    '    </berth:instance>',
    '  </metadata>',
  ];
}

export function domainXml(spec: DomainSpec): string {
  checkDomainSpec(spec);
  const disk = spec.boot.disk;
  const log = xmlEscape(spec.serialLog);
  return [
    `<domain type='${spec.virtType}'>`,
    `  <name>${xmlEscape(spec.name)}</name>`,
    `  <uuid>${spec.uuid}</uuid>`,
    ...metadataXml(spec.owner),
    `  <memory unit='MiB'>${spec.memoryMiB}</memory>`,
    `  <vcpu placement='static'>${spec.vcpus}</vcpu>`,
    ...smbiosXml(spec),
    ...osXml(spec),
    '  <features>',
    '    <acpi/>',
    '    <apic/>',
    '  </features>',
    // host-passthrough only where KVM runs; TCG emulates its default model.
    ...(spec.virtType === 'kvm' ? ["  <cpu mode='host-passthrough'/>"] : []),
    "  <clock offset='utc'/>",
    '  <on_poweroff>destroy</on_poweroff>',
    '  <on_reboot>restart</on_reboot>',
    '  <on_crash>destroy</on_crash>',
    '  <devices>',
    ...(disk ? diskXml(disk) : []),
    ...spec.nics.flatMap(nicXml),
    "    <serial type='file'>",
    `      <source path='${log}'/>`,
    "      <target port='0'/>",
    '    </serial>',
    "    <console type='file'>",
    `      <source path='${log}'/>`,
    "      <target type='serial' port='0'/>",
    '    </console>',
    // Fewer emulated devices: faster boots under TCG, nothing the guest needs lost.
    "    <controller type='usb' model='none'/>",
    "    <memballoon model='none'/>",
    "    <rng model='virtio'>",
    "      <backend model='random'>/dev/urandom</backend>",
    '    </rng>',
    '  </devices>',
    '</domain>',
    '',
  ].join('\n');
}

/** Reads berth's tag back from a domain's XML (or its metadata element); undefined when absent. */
export function parseOwner(xml: string): DomainOwner | undefined {
  const ns = xml.match(/<(\w+):instance\b[^>]*xmlns:\1=['"]([^'"]+)['"]/);
  if (!ns || ns[2] !== BERTH_XMLNS) return undefined;
  const p = ns[1];
  const field = (name: string) => {
    const m = xml.match(new RegExp(`<${p}:${name}>([^<]*)</${p}:${name}>`));
    return m ? unescapeXml(m[1] as string) : undefined;
  };
  const instanceId = field('id');
  const hostId = field('host');
  const prefix = field('prefix');
  if (instanceId === undefined || hostId === undefined || prefix === undefined) return undefined;
  return { instanceId, hostId, prefix };
}

function unescapeXml(s: string): string {
  return s
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&apos;', "'")
    .replaceAll('&#39;', "'")
    .replaceAll('&amp;', '&');
}

/** Every <mac address=...> in a domain's XML, lower-cased. */
export function parseMacs(xml: string): string[] {
  return [...xml.matchAll(/<mac\s+address=['"]([0-9A-Fa-f:]{17})['"]/g)].map((m) =>
    (m[1] as string).toLowerCase(),
  );
}
