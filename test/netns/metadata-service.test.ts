// Acceptance (metadata): netns guests made with berthctl ask 169.254.169.254
// through a real berthd and its endpoint. Each gets its own data, identified
// by the MAC and port the host observed; strangers, copied tokens, proxied
// token requests and policy denials are refused and audited.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { AuditList, AuditRecord, Instance } from '../../agent/api/types.js';
import { inNetns, isRoot, rogue, startLab } from '../helpers/hostnet_lab.js';
import { curl, mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthMetadataTestKeyAAAAAAAAAAAAAAAAAAAAA alice@lab';

t.test('guests get their own data; tokens, strangers and policies', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-md-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'ud'), '#cloud-config\nhostname: from-user-data\n');
  await writeFile(join(dir, 'key.pub'), `${KEY}\n`);
  const lab = await startLab(t);
  const net = await lab.network('m', '10.71.0.0/24');
  const g1 = await mdGuest(lab, 'g1', 'm', [
    '--user-data',
    join(dir, 'ud'),
    '--ssh-key',
    join(dir, 'key.pub'),
    '--role',
    'web',
    '--meta',
    'env=lab',
  ]);
  const g2 = await mdGuest(lab, 'g2', 'm', ['--tokens', 'required']);

  // The instance record reports the inputs, but not the user-data itself.
  const shown = await lab.json<Instance>(['instance', 'show', 'g1']);
  t.match(shown, {
    role: 'web',
    tokens: 'optional',
    meta: { env: 'lab' },
    ssh_keys: [{ name: 'alice@lab', key: KEY }],
  });
  t.equal(shown.user_data?.bytes, '#cloud-config\nhostname: from-user-data\n'.length);
  t.notOk(JSON.stringify(shown).includes('from-user-data'), 'instance show never prints user-data');

  const id1 = await curl(g1.netns, '/latest/meta-data/instance-id');
  t.same([id1.status, id1.body], [200, g1.id], 'g1 gets its own instance id');
  t.equal(
    (await curl(g1.netns, '/latest/meta-data/mac')).body,
    g1.mac,
    'g1 gets the MAC observed on its port',
  );
  t.equal((await curl(g1.netns, '/latest/user-data')).body, '#cloud-config\nhostname: from-user-data\n');
  t.equal((await curl(g1.netns, '/latest/meta-data/public-keys/0/openssh-key')).body.trim(), KEY);

  // g2 requires tokens: without one, 401; PUT then GET works; its token is useless to g1.
  t.equal((await curl(g2.netns, '/latest/meta-data/instance-id')).status, 401, 'g2 without a token: 401');
  const ttl = ['-X', 'PUT', '-H', 'X-aws-ec2-metadata-token-ttl-seconds: 300'];
  const put = await curl(g2.netns, '/latest/api/token', ttl);
  t.equal(put.status, 200, 'token PUT');
  t.match(put.headers.toLowerCase(), /x-aws-ec2-metadata-token-ttl-seconds: 300/, 'the TTL is echoed');
  const tok = ['-H', `X-aws-ec2-metadata-token: ${put.body}`];
  const id2 = await curl(g2.netns, '/latest/meta-data/instance-id', tok);
  t.same([id2.status, id2.body], [200, g2.id], 'g2 with its token gets its own id');
  t.equal(
    (await curl(g1.netns, '/latest/meta-data/instance-id', tok)).status,
    401,
    "g2's token copied to g1: 401",
  );
  t.equal(
    (await curl(g2.netns, '/latest/api/token', [...ttl, '-H', 'x-FORWARDED-for: 10.0.0.1'])).status,
    403,
    'token PUT with X-Forwarded-For refused',
  );
  t.equal(
    (
      await curl(g2.netns, '/latest/api/token', [
        '-X',
        'PUT',
        '-H',
        'X-aws-ec2-metadata-token-ttl-seconds: 0',
      ])
    ).status,
    400,
    'TTL 0: 400',
  );
  t.equal(
    (await curl(g1.netns, '/latest/meta-data/instance-id', ['-H', 'Host: evil.example'])).status,
    403,
    'foreign Host refused',
  );
  t.equal((await curl(g1.netns, '/latest/meta-data/instance-id', ['-X', 'DELETE'])).status, 405);

  // A deny policy for role web: user-data 403, meta-data still 200.
  const set = await lab.ctl([
    'policy',
    'set',
    'web-no-ud',
    '--identity',
    'role:web',
    '--deny',
    'read:user-data',
  ]);
  t.equal(set.code, 0, `policy set: ${set.stderr}`);
  t.match((await lab.json<unknown[]>(['policy', 'list']))[0], {
    name: 'web-no-ud',
    deny: ['read:user-data'],
  });
  t.equal((await curl(g1.netns, '/latest/user-data')).status, 403, 'user-data denied for role web');
  t.equal((await curl(g1.netns, '/latest/meta-data/instance-id')).status, 200, 'meta-data still works');
  const { records } = await lab.d.client.audit({ event: 'metadata.request', outcome: 'refused' });
  t.match(
    records.find((r) => r.path === 'GET /latest/user-data'),
    {
      mac: g1.mac,
      port: g1.port,
      ip: g1.ip,
      network: 'm',
      instance: g1.id,
      identity: /role:web/,
      reason: /web-no-ud/,
    },
    'the denial is audited with MAC, port, IP, network, identity, path and reason',
  );
  t.equal((await lab.ctl(['policy', 'delete', 'web-no-ud'])).code, 0);
  t.equal((await curl(g1.netns, '/latest/user-data')).status, 200, 'policy gone: user-data served again');

  // A stranger on a port berth does not own: the guard keeps it from the
  // endpoint (no answer at all) and audits the drop with what was observed.
  const r = await rogue(t, lab.prefix, 'm1', net.bridge, {
    mac: '02:66:00:00:00:01',
    ip: '10.71.0.200',
    prefixLen: 24,
  });
  await inNetns(r.netns, ['ip', 'route', 'add', '169.254.169.254', 'dev', 'eth0']);
  const stranger = await curl(r.netns, '/latest/meta-data/instance-id', ['-m', '3']).catch((err: Error) => ({
    status: 0,
    body: err.message,
  }));
  t.equal(stranger.status, 0, 'unowned port: no answer');
  let drop: AuditRecord | undefined;
  for (let i = 0; i < 25 && !drop; i++) {
    const seen = await lab.d.client.request<AuditList>('GET', '/audit?event=guard.drop&limit=1000');
    drop = seen.records.find((x) => x.port === r.port);
    if (!drop) await new Promise((res) => setTimeout(res, 200));
  }
  t.match(
    drop,
    { mac: '02:66:00:00:00:01', port: r.port, reason: 'edge-to-endpoint', detail: { class: 'foreign' } },
    'the stranger is audited',
  );

  // Answers leave the endpoint with IP TTL 1 (a namespace-wide default there).
  const ttlNow = await inNetns(net.endpoint, ['cat', '/proc/sys/net/ipv4/ip_default_ttl']);
  t.equal(ttlNow.stdout.trim(), '1', 'the endpoint namespace sends with TTL 1');

  // Delete g1: its IP must not serve g1's data to anyone afterwards.
  t.equal((await lab.ctl(['instance', 'delete', 'g1'])).code, 0);
  const again = await curl(g2.netns, '/latest/meta-data/instance-id', tok);
  t.equal(again.body, g2.id, 'g2 unaffected by the delete');

  // Spoofing with the guard out of the way: g2's MAC sent from a port berth did not give it.
  const clone = await rogue(t, lab.prefix, 'm2', net.bridge, {
    mac: g2.mac,
    ip: '10.71.0.201',
    prefixLen: 24,
  });
  await inNetns(clone.netns, ['ip', 'route', 'add', '169.254.169.254', 'dev', 'eth0']);
  // The endpoint answers g2's MAC, which berth pinned (static sticky) to g2's own port.
  const spoof = await curl(clone.netns, '/latest/meta-data/instance-id', [...tok, '-m', '3']).catch(
    (err: Error) => ({ status: 0, body: err.message }),
  );
  t.equal(spoof.status, 0, `a clone of g2 on another port gets no answer at all: ${spoof.body}`);
  t.equal((await curl(g2.netns, '/latest/meta-data/instance-id', tok)).body, g2.id, 'g2 is still served');
});

t.test('two networks, same subnet, same guest IP: each gets its own data', async (t) => {
  const lab = await startLab(t);
  await lab.network('a', '10.72.0.0/24');
  await lab.network('b', '10.72.0.0/24');
  const a1 = await mdGuest(lab, 'a1', 'a');
  const b1 = await mdGuest(lab, 'b1', 'b');
  t.equal(a1.ip, b1.ip, 'same IP on both networks');
  t.equal((await curl(a1.netns, '/latest/meta-data/instance-id')).body, a1.id);
  t.equal((await curl(b1.netns, '/latest/meta-data/instance-id')).body, b1.id);
  t.equal((await curl(a1.netns, '/latest/meta-data/mac')).body, a1.mac);
  t.equal((await curl(b1.netns, '/latest/meta-data/mac')).body, b1.mac);
});
