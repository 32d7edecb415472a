// Cluster mode over TLS: etcd serving https and requiring client certificates
// (a CA, server and client certificates made here with openssl). berthd with
// `cluster.tls` joins and creates; a client without a certificate, or with
// one from another CA, is refused as BERTH_ERR_CLUSTER_UNAVAILABLE.
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { EtcdKv } from '../../agent/store/etcd-kv.js';
import { startBerthd, tempDir } from '../helpers/berthd.js';
import { EtcdMembers } from '../helpers/etcd-members.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (berthd builds bridges and namespaces)');
  process.exit(0);
}

const dir = await tempDir(t, 'berth-etcd-tls');
const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });

/** A self-signed CA named `name`. */
function makeCa(name: string): void {
  ssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
  );
}
/** A certificate signed by ca, for CN name; a server's also names 127.0.0.1. */
function makeCert(ca: string, name: string, server: boolean): void {
  ssl(
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    `/CN=${name}`,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
  );
  const ext = join(dir, `${name}.ext`);
  execFileSync('sh', [
    '-c',
    `printf '%s\\n' '${server ? 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth' : 'extendedKeyUsage=clientAuth'}' > ${ext}`,
  ]);
  ssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    `${name}.pem`,
    '-extfile',
    ext,
  );
}

makeCa('ca');
makeCa('other-ca');
makeCert('ca', 'server', true);
makeCert('ca', 'client', false);
makeCert('other-ca', 'stranger', false);
const f = (name: string) => join(dir, name);
const etcd = await EtcdMembers.start(join(dir, 'etcd'), 1, `tls-${process.pid}`, {
  caFile: f('ca.pem'),
  certFile: f('server.pem'),
  keyFile: f('server.key'),
});
t.teardown(() => etcd.stop());

t.test('a client with a certificate from the cluster CA reads and writes', async (t) => {
  const kv = new EtcdKv({
    endpoints: etcd.endpoints,
    prefix: '/tls/',
    tls: {
      ca: await readFile(f('ca.pem')),
      cert: await readFile(f('client.pem')),
      key: await readFile(f('client.key')),
    },
  });
  t.teardown(() => kv.close());
  await kv.batch([{ type: 'put', key: 'x', value: 1 }], { guards: [{ key: 'x', absent: true }] });
  t.equal(await kv.get('x'), 1);
});

t.test('no client certificate, or one from another CA: refused as unavailable', async (t) => {
  for (const [what, cert, key] of [
    ['no certificate', undefined, undefined],
    ['a stranger CA', 'stranger.pem', 'stranger.key'],
  ] as const) {
    const kv = new EtcdKv({
      endpoints: etcd.endpoints,
      prefix: '/tls/',
      callTimeoutMs: 1000,
      tls: {
        ca: await readFile(f('ca.pem')),
        ...(cert ? { cert: await readFile(f(cert)), key: await readFile(f(key as string)) } : {}),
      },
    });
    const err = await kv.get('x').then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    await kv.close();
    t.equal(err?.code, 'BERTH_ERR_CLUSTER_UNAVAILABLE', `${what}: refused`);
    t.match(err?.message, etcd.endpoints[0] as string, `${what}: the endpoint is named`);
  }
});

t.test('berthd joins with cluster.tls from berthd.yaml', async (t) => {
  const b = await startBerthd(t, {
    config: [
      'host_id: tls1',
      'cluster:',
      `  etcd: [${etcd.endpoints[0]}]`,
      '  prefix: /tls-berthd/',
      `  tls: {ca_file: ${f('ca.pem')}, cert_file: ${f('client.pem')}, key_file: ${f('client.key')}}`,
      'networks: [{name: tlsnet, subnet: 10.253.0.0/24}]',
      '',
    ].join('\n'),
  });
  const inst = await b.client.createInstance({ name: 'over-tls', network: 'tlsnet', runtime: 'netns' });
  const kv = new EtcdKv({
    endpoints: etcd.endpoints,
    prefix: '/tls-berthd/',
    tls: {
      ca: await readFile(f('ca.pem')),
      cert: await readFile(f('client.pem')),
      key: await readFile(f('client.key')),
    },
  });
  t.teardown(() => kv.close());
  t.same(
    (await kv.list<{ host: string; name: string }>('directory/')).map((e) => [e.value.host, e.value.name]),
    [['tls1', 'over-tls']],
    'its directory entry is in etcd, written over TLS',
  );
  t.ok(await kv.get('host/tls1'), 'registered');
  await b.client.deleteInstance(inst.id);
});
