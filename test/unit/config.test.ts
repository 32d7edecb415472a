import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../agent/config/load.js';
import { EMBEDDED_DEFAULT } from '../../agent/config/schema.js';
import { fieldPath, validateConfig, validateMacPrefix } from '../../agent/config/validate.js';

const reject = (raw: unknown) => {
  try {
    validateConfig(raw);
  } catch (err) {
    return (err as Error & { code: string }).code === 'BERTH_ERR_CONFIG'
      ? (err as Error).message
      : `wrong code: ${String(err)}`;
  }
  return 'accepted';
};

t.test('the embedded default applies to an empty file', async (t) => {
  t.same(validateConfig(null), EMBEDDED_DEFAULT);
  t.same(validateConfig({}), EMBEDDED_DEFAULT);
});

t.test('a bad config names the key and the reason', async (t) => {
  const net = (over: object) => ({ networks: [{ name: 'a', subnet: '10.0.0.0/24', ...over }] });
  t.equal(reject(net({ subnet: '10.0.0.0/33' })), 'config: networks[0].subnet: "10.0.0.0/33" is not a CIDR');
  t.equal(
    reject(net({ subnet: '10.0.0.5/24' })),
    'config: networks[0].subnet: "10.0.0.5/24" has host bits set; did you mean 10.0.0.0/24?',
  );
  t.equal(
    reject(net({ subnet: '10.0.0.0/30' })),
    'config: networks[0].subnet: "10.0.0.0/30" is too small; a network needs at least a /29',
  );
  t.equal(
    reject(net({ gateway: '10.0.1.1' })),
    'config: networks[0].gateway: "10.0.1.1" is outside 10.0.0.0/24',
  );
  t.equal(
    reject(net({ gateway: '10.0.0.255' })),
    'config: networks[0].gateway: "10.0.0.255" is the network or broadcast address of 10.0.0.0/24',
  );
  t.equal(
    reject(net({ dns: ['1.1.1.1', 'dns.example'] })),
    'config: networks[0].dns[1]: "dns.example" is not an IPv4 address',
  );
  t.equal(
    reject(net({ vlan: 100 })),
    'config: networks[0].uplink: is required when vlan is set: tagged frames need a trunk interface',
  );
  t.equal(reject(net({ vlan: 4095, uplink: 'eth0' })), 'config: networks[0].vlan: must be <= 4094');
  t.equal(reject(net({ mtu: 100 })), 'config: networks[0].mtu: must be >= 576');
  t.equal(reject(net({ colour: 'red' })), 'config: networks[0].colour: unknown key');
  t.equal(reject({ networks: [{ subnet: '10.0.0.0/24' }] }), 'config: networks[0].name: is required');
  t.equal(
    reject({
      networks: [
        { name: 'a', subnet: '10.0.0.0/24' },
        { name: 'a', subnet: '10.0.1.0/24' },
      ],
    }),
    'config: networks[1].name: "a" is declared twice',
  );
  t.equal(reject({ log_level: 'loud' }), 'config: log_level: must be one of trace, debug, info, warn, error');
  t.equal(
    reject({ mac_pools: [{ prefix: '0b:00:00' }] }),
    'config: mac_pools[0].prefix: "0b:00:00" is a multicast prefix; guest MACs must be unicast',
  );
  t.equal(reject([1, 2]), 'config: the top level must be a mapping');
  t.match(
    reject({ metadata: { rate_limit: { per_second: 0 } } }),
    /^config: metadata\.rate_limit\.per_second: .*1/,
  );
  t.match(reject({ metadata: { rate_limit: { burst: 2.5 } } }), /^config: metadata\.rate_limit\.burst: /);
  t.same(validateConfig({ metadata: { rate_limit: { per_second: 50 } } }).metadata, {
    rate_limit: { per_second: 50, burst: 400 },
  });
  t.same(validateConfig({}).audit, { reserve_bytes: 4194304 }, 'a 4 MiB audit reserve by default');
  t.same(validateConfig({ audit: { reserve_bytes: 0 } }).audit, { reserve_bytes: 0 }, '0: no reserve');
  t.match(
    reject({ audit: { reserve_bytes: 1000 } }),
    /^config: audit\.reserve_bytes: /,
    'too small to hold much',
  );
});

t.test('MAC prefixes must be unicast, locally administered and not 0xfe', async (t) => {
  t.equal(validateMacPrefix('0a:b7:e7'), undefined);
  t.match(validateMacPrefix('00:16:3e'), /^"00:16:3e" is not locally administered/);
  t.match(validateMacPrefix('fe:00:00'), /libvirt reserves/);
  t.match(validateMacPrefix('0A:B7:E7'), /not a 3-byte MAC prefix/);
});

t.test('field paths read like the YAML', async (t) => {
  t.equal(fieldPath('/networks/0/subnet'), 'networks[0].subnet');
  t.equal(fieldPath('/quarantine/ip_seconds'), 'quarantine.ip_seconds');
  t.equal(fieldPath(''), '');
});

t.test('loadConfig: default path may be absent, an explicit one may not', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-config-'));
  t.teardown(() => import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true })));
  const missing = join(dir, 'nope.yaml');
  await t.rejects(loadConfig(missing), {
    code: 'BERTH_ERR_CONFIG',
    message: new RegExp(`could not read "${missing}"`),
  });
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'networks: [\n');
  await t.rejects(loadConfig(bad), { code: 'BERTH_ERR_CONFIG', message: /is not valid YAML/ });
  const good = join(dir, 'good.yaml');
  await writeFile(good, 'log_level: debug\nquarantine:\n  ip_seconds: 5\n');
  const loaded = await loadConfig(good);
  t.equal(loaded.source, good);
  t.equal(loaded.config.log_level, 'debug');
  t.same(loaded.config.quarantine, { mac_seconds: 3600, ip_seconds: 5 });
});

t.test('cluster mode: the etcd endpoints, TLS and physical networks are checked', async (t) => {
  const ok = validateConfig({
    cluster: { etcd: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'] },
    physical_networks: { fabric: 'eth1' },
  });
  t.same(ok.cluster, {
    etcd: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'],
    prefix: '/berth/',
    tls: undefined,
    address: undefined,
    lease_seconds: 10,
    forgotten_key_hours: 168,
  });
  t.same(ok.physical_networks, { fabric: 'eth1' });
  t.equal(validateConfig({}).cluster, undefined, 'no cluster block: a single host');
  t.equal(reject({ cluster: { etcd: [] } }), 'config: cluster.etcd: must not have fewer than 1 items');
  t.equal(
    reject({ cluster: { etcd: ['10.0.0.1:2379'] } }),
    'config: cluster.etcd[0]: "10.0.0.1:2379" is not a URL like http://10.0.0.1:2379',
  );
  t.equal(
    reject({ cluster: { etcd: ['http://10.0.0.1:2379/v3'] } }),
    'config: cluster.etcd[0]: "http://10.0.0.1:2379/v3" has a path; give the client URL only',
  );
  t.equal(
    reject({ cluster: { etcd: ['https://10.0.0.1:2379'] } }),
    'config: cluster.tls: is required for https:// endpoints (ca_file at least)',
  );
  t.equal(
    reject({ cluster: { etcd: ['https://10.0.0.1:2379'], tls: { ca_file: '/ca', cert_file: '/c' } } }),
    'config: cluster.tls: cert_file and key_file go together',
  );
  t.equal(
    reject({ cluster: { etcd: ['http://a:1'], lease_seconds: 1 } }),
    'config: cluster.lease_seconds: must be >= 2',
  );
  t.equal(
    reject({ physical_networks: { a: 'eth1', b: 'eth1' } }),
    'config: physical_networks.b: "eth1" is already the interface of "a"',
  );
  t.equal(
    reject({ physical_networks: { Fabric: 'eth1' } }),
    'config: physical_networks.Fabric: a label is lower case: [a-z][a-z0-9_-]{0,31}',
  );
});
