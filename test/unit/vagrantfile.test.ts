// The Vagrantfile's per-host berthd.yaml is a config berthd accepts, in
// cluster mode on the hosts' own etcd members, with one MAC pool for all
// (uniqueness comes from etcd, not from per-host prefixes); and the etcd
// settings name every member. Read through Ruby with Vagrant stubbed out.
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { parse } from 'yaml';
import { validateConfig } from '../../agent/config/validate.js';
import { ROOT } from '../helpers/berthd.js';

const ruby = (hosts: number, expr: string) =>
  execFileSync(
    'ruby',
    ['-e', `module Vagrant; def self.configure(*); end; end; load 'Vagrantfile'; print(${expr})`],
    { cwd: ROOT, env: { ...process.env, BERTH_HOSTS: String(hosts) }, encoding: 'utf8' },
  );

t.test('every host gets a valid cluster-mode berthd.yaml', async (t) => {
  const configs = [1, 2, 3].map((i) => validateConfig(parse(ruby(3, `berth_config(${i})`))));
  for (const [i, c] of configs.entries()) {
    t.equal(c.host_id, `hv${i + 1}`);
    t.same(c.cluster?.etcd, [
      'http://192.168.78.11:2379',
      'http://192.168.78.12:2379',
      'http://192.168.78.13:2379',
    ]);
    t.equal(c.cluster?.address, `192.168.78.${11 + i}`);
    t.same(c.physical_networks, { trunk: 'eth1' });
    t.same(
      c.networks.filter((n) => n.vlan).map((n) => n.uplink),
      ['trunk', 'trunk'],
      'VLAN networks ride the trunk label',
    );
  }
  t.same(new Set(configs.map((c) => JSON.stringify(c.mac_pools))).size, 1, 'one MAC pool for every host');
});

t.test('the etcd member settings name every host as a peer', async (t) => {
  const env = ruby(2, 'etcd_setup(2)');
  t.match(env, /ETCD_NAME=hv2\n/);
  t.match(
    env,
    /ETCD_INITIAL_CLUSTER=hv1=http:\/\/192\.168\.78\.11:2380,hv2=http:\/\/192\.168\.78\.12:2380\n/,
  );
  t.match(env, /ETCD_LISTEN_CLIENT_URLS=http:\/\/192\.168\.78\.12:2379,http:\/\/127\.0\.0\.1:2379\n/);
  t.match(
    env,
    /systemctl restart --no-block etcd/,
    'a member does not hold up provisioning while it waits for its peers',
  );
});
