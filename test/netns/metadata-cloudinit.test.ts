// Acceptance (metadata): cloud-init's own Python code (Debian's cloud-init
// 22.4, run with Debian's python3 inside a netns guest) crawls the EC2,
// OpenStack and NoCloud trees berth serves, without a warning, and finds the
// instance id, user-data, public keys and network data. A second guest whose
// keys and tags a policy denies is crawled too: every datasource still reads
// cleanly, and none of them finds the keys.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { isRoot, PYTHON, startLab } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}
if (!existsSync('/usr/lib/python3/dist-packages/cloudinit')) {
  t.fail('cloud-init is not installed; run scripts/provision.sh (scripts/debian-packages.txt lists it)');
  process.exit(1);
}

const CRAWL = fileURLToPath(new URL('../helpers/cloudinit_crawl.py', import.meta.url));

function crawl(netns: string): Promise<string> {
  return new Promise<string>((resolve, reject) =>
    execFile(
      'ip',
      ['netns', 'exec', netns, PYTHON, CRAWL],
      { encoding: 'utf8', timeout: 60_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
    ),
  );
}
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICloudInitCrawlKeyAAAAAAAAAAAAAAAAAAAAAAAA bob@lab';

t.test('cloud-init crawls the EC2, OpenStack and NoCloud trees', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-ci-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const userData = '#cloud-config\npackages: [htop]\n';
  await writeFile(join(dir, 'ud'), userData);
  await writeFile(join(dir, 'key.pub'), `${KEY}\n`);
  const lab = await startLab(t);
  await lab.network('ci', '10.73.0.0/24');
  const g = await mdGuest(lab, 'c1', 'ci', [
    '--user-data',
    join(dir, 'ud'),
    '--ssh-key',
    join(dir, 'key.pub'),
  ]);
  const started = Date.now();
  const raw = await crawl(g.netns);
  t.comment(`cloud-init crawl took ${Date.now() - started} ms`);
  const r = JSON.parse(raw);
  t.same(r.problems, [], 'cloud-init logged no warning or error while crawling');
  t.equal(r.ec2.instance_id, g.id, 'EC2: instance id');
  t.equal(r.ec2.mac, g.mac, 'EC2: mac');
  t.same(r.ec2.macs, [g.mac], 'EC2: network/interfaces/macs');
  t.same(r.ec2.public_keys, { 'bob@lab': KEY }, 'EC2: public keys');
  t.equal(r.ec2.user_data, userData, 'EC2: user-data');
  t.match(r.ec2.identity_document, { instanceId: g.id, mac: g.mac }, 'EC2: identity document');
  t.equal(r.openstack.uuid, g.instance.uuid, 'OpenStack: uuid');
  t.equal(r.openstack.version, '2018-08-27', 'OpenStack: the newest version cloud-init knows was chosen');
  t.same(r.openstack.public_keys, { 'bob@lab': KEY }, 'OpenStack: public keys');
  t.equal(r.openstack.random_seed_len, 512);
  t.equal(r.openstack.user_data, userData, 'OpenStack: user_data');
  t.equal(r.openstack.ec2_instance_id, g.id, 'OpenStack reader also read the EC2 tree');
  t.match(r.openstack.networkdata, {
    links: [{ ethernet_mac_address: g.mac, mtu: 1500 }],
    networks: [{ ip_address: g.ip }],
  });
  t.match(
    r.openstack.network_config,
    {
      version: 1,
      config: [
        { type: 'physical', mac_address: g.mac, mtu: 1500, subnets: [{ type: 'static', address: g.ip }] },
      ],
    },
    'cloud-init turns network_data.json into its own network config',
  );
  t.match(r.nocloud.meta_data, { 'instance-id': g.id, 'public-keys': [KEY] }, 'NoCloud: meta-data');
  t.equal(r.nocloud.user_data, userData, 'NoCloud: user-data');
});

t.test('with keys and tags denied, cloud-init still crawls every tree and finds no keys', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-ci-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const userData = '#cloud-config\npackages: [htop]\n';
  await writeFile(join(dir, 'ud'), userData);
  await writeFile(join(dir, 'key.pub'), `${KEY}\n`);
  const lab = await startLab(t);
  await lab.network('cd', '10.75.0.0/24');
  const g = await mdGuest(lab, 'c2', 'cd', [
    ...['--user-data', join(dir, 'ud'), '--ssh-key', join(dir, 'key.pub'), '--meta', 'team=ci'],
  ]);
  const set = await lab.ctl([
    ...['policy', 'set', 'c2-no-keys', '--identity', `instance:${g.id}`],
    ...['--deny', 'read:meta-data/public-keys', '--deny', 'read:meta-data/tags'],
  ]);
  t.equal(set.code, 0, set.stderr);
  const raw = await crawl(g.netns);
  t.notOk(raw.includes('CloudInitCrawlKey'), 'the key is nowhere in what cloud-init read');
  const r = JSON.parse(raw);
  t.same(r.problems, [], 'cloud-init logged no warning or error while crawling');
  t.equal(r.ec2.instance_id, g.id, 'EC2: instance id');
  t.equal(r.ec2.public_keys, null, 'EC2: no public keys');
  t.equal(r.ec2.user_data, userData, 'EC2: user-data');
  t.equal(r.openstack.uuid, g.instance.uuid, 'OpenStack: uuid');
  t.equal(r.openstack.public_keys, null, 'OpenStack: no public keys');
  t.equal(r.openstack.user_data, userData, 'OpenStack: user_data');
  t.match(r.nocloud.meta_data, { 'instance-id': g.id }, 'NoCloud: meta-data');
  t.notOk('public-keys' in r.nocloud.meta_data, 'NoCloud: no public-keys');
  t.equal(r.nocloud.user_data, userData, 'NoCloud: user-data');
});
