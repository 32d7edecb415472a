import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startBerthd } from '../helpers/berthd.js';
import { EtcdMembers } from '../helpers/etcd-members.js';

const dir = await mkdtemp(join(tmpdir(), 'berth-smoke-'));
const etcd = await EtcdMembers.start(dir, 3);
t.teardown(() => etcd.stop());
const cfg = (id: string) =>
  `host_id: ${id}\ncluster:\n  etcd: [${etcd.endpoints.join(', ')}]\n  prefix: /smoke${process.pid}/\n  lease_seconds: 3\nnetworks:\n  - name: shared\n    subnet: 10.251.0.0/24\n`;
t.test('two hosts', async (t) => {
  const a = await startBerthd(t, { config: cfg('hv1') });
  const b = await startBerthd(t, { config: cfg('hv2') });
  const ia = await a.client.createInstance({ name: 'a1', network: 'shared', runtime: 'netns' } as never);
  const ib = await b.client.createInstance({ name: 'b1', network: 'shared', runtime: 'netns' } as never);
  t.comment(JSON.stringify([ia.nics, ib.nics]));
  t.not(ia.nics[0]?.ip, ib.nics[0]?.ip);
  t.not(ia.nics[0]?.mac, ib.nics[0]?.mac);
  await t.rejects(b.client.createInstance({ name: 'a1', network: 'shared', runtime: 'netns' } as never), {
    code: 'BERTH_ERR_ALREADY_EXISTS',
  });
  await a.client.deleteInstance('a1');
  await b.client.deleteInstance('b1');
});
