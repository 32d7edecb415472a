// cloud-init's datasource classes themselves (Debian's cloud-init 22.4, with
// Debian's python3, inside a netns guest), each through its public
// get_data(): DataSourceEc2 as a KVM guest of berth sees it (IMDSv1, with the
// API version probe) and on the platform where cloud-init does the IMDSv2
// token flow; DataSourceOpenStack; DataSourceNoCloudNet. What each reads as
// DMI is what berth's domain XML puts in a libvirt guest's SMBIOS.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { domainXml, type SmbiosDatasource } from '../../agent/compute/domain-xml.js';
import { isRoot, PYTHON, startLab } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const DATASOURCES = fileURLToPath(new URL('../helpers/cloudinit_datasources.py', import.meta.url));
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDatasourceClassKeyAAAAAAAAAAAAAAAAAAAAAAAA ann@lab';
const USER_DATA = '#cloud-config\nruncmd: [[touch, /run/berth-ran]]\n';
const VENDOR_DATA = '#cloud-config\nbootcmd: [[true]]\n';

/** The SMBIOS system entries berth's domain XML gives a guest, as the DMI strings the guest reads. */
function dmiOf(smbios: SmbiosDatasource, uuid: string): Record<string, string> {
  const xml = domainXml({
    name: 'zci-dmi',
    uuid,
    virtType: 'qemu',
    vcpus: 1,
    memoryMiB: 64,
    boot: { kind: 'disk', disk: '/nonexistent.qcow2' },
    nics: [],
    serialLog: '/nonexistent.log',
    smbios,
    owner: { instanceId: 'i-00000000', hostId: 'h', prefix: 'zci' },
  });
  const dmiKey: Record<string, string> = {
    manufacturer: 'system-manufacturer',
    product: 'system-product-name',
    serial: 'system-serial-number',
    uuid: 'system-uuid',
  };
  const out: Record<string, string> = {};
  for (const [, name, value] of xml.matchAll(/<entry name='(\w+)'>([^<]*)<\/entry>/g))
    if (dmiKey[name as string])
      out[dmiKey[name as string] as string] = (value as string).replaceAll('&amp;', '&');
  return out;
}

interface Found {
  found: boolean;
  class: string;
  instance_id?: string;
  hostname?: string;
  public_keys?: string[];
  user_data?: string;
  vendor_data?: string;
  platform?: string;
  cloud_name?: string;
  api_version?: string;
  availability_zone?: string;
  has_token?: boolean;
  uuid?: string;
  network_json?: boolean;
  asked: { method: string; url: string; token: boolean }[];
  problems: string[];
}

function datasource(netns: string, source: string, dmi: Record<string, string>): Promise<Found> {
  return new Promise((resolve, reject) =>
    execFile(
      'ip',
      ['netns', 'exec', netns, PYTHON, DATASOURCES, source, JSON.stringify(dmi)],
      { encoding: 'utf8', timeout: 120_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr.slice(-2000)}`)) : resolve(JSON.parse(stdout)),
    ),
  );
}

const dir = await mkdtemp(join(tmpdir(), 'berth-cids-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
await writeFile(join(dir, 'ud'), USER_DATA);
await writeFile(join(dir, 'vd'), VENDOR_DATA);
await writeFile(join(dir, 'key.pub'), `${KEY}\n`);
const lab = await startLab(t);
await lab.network('cs', '10.74.0.0/24');
const inputs = [
  '--user-data',
  join(dir, 'ud'),
  '--vendor-data',
  join(dir, 'vd'),
  '--ssh-key',
  join(dir, 'key.pub'),
];
const g = await mdGuest(lab, 'cds1', 'cs', inputs);
const strict = await mdGuest(lab, 'cds2', 'cs', [...inputs, '--tokens', 'required']);

t.test('DataSourceEc2 on a KVM guest of berth: IMDSv1, the newest API version berth serves', async (t) => {
  const r = await datasource(g.netns, 'ec2', dmiOf({ kind: 'nocloud' }, g.instance.uuid));
  t.ok(r.found, `get_data() found berth (${r.problems.join('; ')})`);
  t.equal(r.instance_id, g.id, 'instance id');
  t.equal(r.user_data, USER_DATA, 'user-data');
  t.same(r.public_keys, [KEY], 'the SSH key');
  t.equal(r.hostname, g.name, 'hostname');
  t.equal(r.api_version, '2021-03-23', "the version probe settled on the newest of cloud-init's list");
  t.ok(
    r.asked.some((a) => a.url.endsWith('/2021-03-23/meta-data/instance-id')),
    'the probe asked for it',
  );
  t.notOk(
    r.asked.some((a) => a.token || a.method === 'PUT'),
    'no token flow: cloud-init 22.4 does it only on AWS',
  );
  t.ok(r.availability_zone, `availability zone: ${r.availability_zone}`);
  const unexpected = r.problems.filter((p) => !/strict_id|platform|Unable to determine/i.test(p));
  t.same(unexpected, [], 'no warning beyond the unknown-platform notice');
});

t.test('DataSourceEc2 with the IMDSv2 token flow, on an instance that requires tokens', async (t) => {
  const r = await datasource(strict.netns, 'ec2-aws', dmiOf({ kind: 'nocloud' }, strict.instance.uuid));
  t.ok(r.found, `get_data() found berth (${r.problems.join('; ')})`);
  t.equal(r.cloud_name, 'aws');
  t.ok(r.has_token, 'cloud-init holds a token from berth');
  const first = r.asked[0];
  t.match(first, { method: 'PUT', url: /\/latest\/api\/token$/ }, 'the first request is the token PUT');
  const gets = r.asked.filter((a) => a.method === 'GET');
  t.ok(gets.length > 3, `${gets.length} reads`);
  t.ok(
    gets.every((a) => a.token),
    'every read carried the token',
  );
  t.equal(r.instance_id, strict.id, 'instance id (from the identity document)');
  t.equal(r.user_data, USER_DATA, 'user-data');
  t.same(r.public_keys, [KEY], 'the SSH key');
  t.equal(r.api_version, '2021-03-23', 'the version probe, with the token');
  t.same(r.problems, [], 'no warning');
  // The same instance without the token flow: berth refuses, and cloud-init finds nothing.
  const v1 = await datasource(strict.netns, 'ec2', dmiOf({ kind: 'nocloud' }, strict.instance.uuid));
  t.notOk(v1.found, 'IMDSv1 on an instance that requires tokens finds no datasource');
});

t.test('DataSourceOpenStack on the SMBIOS berth gives an OpenStack-mode guest', async (t) => {
  const dmi = dmiOf({ kind: 'openstack' }, g.instance.uuid);
  t.equal(dmi['system-product-name'], 'OpenStack Compute');
  const r = await datasource(g.netns, 'openstack', dmi);
  t.ok(r.found, `get_data() found berth (${r.problems.join('; ')})`);
  t.equal(r.uuid, g.instance.uuid, 'uuid');
  t.equal(r.instance_id, g.instance.uuid, "instance id (OpenStack's is the uuid)");
  t.equal(r.hostname, g.name, 'hostname');
  t.equal(r.user_data, USER_DATA, 'user_data');
  t.equal(r.vendor_data, VENDOR_DATA, 'vendor_data');
  t.same(r.public_keys, [KEY], 'the SSH key');
  t.ok(
    r.asked.some((a) => a.url.endsWith('/openstack/2018-08-27/meta_data.json')),
    'it read meta_data.json of the newest version cloud-init knows',
  );
  t.ok(r.network_json, 'network_data.json was read');
  t.same(r.problems, [], 'no warning');
  const plain = await datasource(g.netns, 'openstack', dmiOf({ kind: 'nocloud' }, g.instance.uuid));
  t.notOk(plain.found, 'without the OpenStack product name the datasource stays away (control)');
});

t.test('DataSourceNoCloudNet from the SMBIOS serial berth writes', async (t) => {
  const dmi = dmiOf({ kind: 'nocloud' }, g.instance.uuid);
  t.match(dmi['system-serial-number'], /^ds=nocloud-net;s=http:\/\/169\.254\.169\.254\/nocloud\/$/);
  const r = await datasource(g.netns, 'nocloud-net', dmi);
  t.ok(r.found, `get_data() found berth (${r.problems.join('; ')})`);
  t.equal(r.instance_id, g.id, 'instance id');
  t.equal(r.hostname, g.name, 'hostname');
  t.equal(r.user_data, USER_DATA, 'user-data');
  t.equal(r.vendor_data, VENDOR_DATA, 'vendor-data');
  t.same(r.public_keys, [KEY], 'the SSH key');
  t.ok(
    r.asked.some((a) => a.url === 'http://169.254.169.254/nocloud/meta-data'),
    'it read the seed berth named',
  );
  t.same(r.problems, [], 'no warning');
});
