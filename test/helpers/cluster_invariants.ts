// What must hold across a cluster after any fault: the directory in etcd and
// each host's own records agree; every assigned MAC and IP record belongs to
// a NIC in the directory and every NIC has both; MACs and IPs are unique
// cluster-wide; and each host's kernel objects are exactly its instances'.
import type { Test } from 'tap';
import type { DirectoryEntry } from '../../agent/services/instances.js';
import type { AllocRecord } from '../../hostnet/alloc/allocator.js';
import type { ClusterLab } from './cluster_lab.js';
import { hostView } from './faults.js';

const sorted = (xs: Iterable<string>) => [...xs].sort();

export async function checkClusterInvariants(t: Test, lab: ClusterLab, hostIds = lab.hosts.map((h) => h.id)) {
  const dir = (await lab.kv.list<DirectoryEntry>('directory/')).map((e) => e.value);
  const nics = dir.flatMap((d) => d.nics.map((n) => ({ ...n, id: d.id })));
  t.equal(
    new Set(nics.map((n) => n.mac)).size,
    nics.length,
    `${nics.length} MACs in the cluster, all distinct`,
  );
  t.equal(
    new Set(nics.map((n) => `${n.network}/${n.ip}`)).size,
    nics.length,
    'IPs distinct within each network, cluster-wide',
  );
  const assigned = (prefix: string) =>
    lab.kv
      .list<AllocRecord>(prefix)
      .then((rows) =>
        rows.filter((r) => r.value.state === 'assigned').map((r) => `${r.key}=${r.value.instance}`),
      );
  const macKeys = await assigned('mac/');
  const ipKeys = await assigned('ip/');
  t.same(
    sorted(macKeys.map((k) => k.replace(/^mac\/[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}:/, ''))),
    sorted(nics.map((n) => `${n.mac.slice(9)}=${n.id}`)),
    'every assigned MAC record is a NIC in the directory, and every NIC has one',
  );
  t.same(
    sorted(ipKeys),
    sorted(nics.map((n) => `ip/${n.network}/${n.ip}=${n.id}`)),
    'every assigned IP record is a NIC in the directory, and every NIC has one',
  );
  const names = await lab.kv.list<string>('instance-name/');
  t.same(
    sorted(names.map((n) => `${n.key.slice('instance-name/'.length)}=${n.value}`)),
    sorted(dir.map((d) => `${d.name}=${d.id}`)),
    'one name record per directory entry',
  );
  for (const host of lab.hosts.filter((h) => hostIds.includes(h.id))) {
    const local = (await host.client.instances()).instances;
    t.same(
      local.filter((i) => i.state === 'creating' || i.state === 'deleting').map((i) => i.name),
      [],
      `${host.id}: nothing left creating or deleting`,
    );
    t.same(
      sorted(local.map((i) => i.id)),
      sorted(dir.filter((d) => d.host === host.id).map((d) => d.id)),
      `${host.id}: its records are exactly its directory entries`,
    );
    const view = await hostView(host.prefix);
    const ports = local.flatMap((i) => i.nics.map((n) => n.port));
    t.same(sorted(view.ports), sorted(ports), `${host.id}: one port per NIC, and no other`);
    t.same(sorted(view.guardPorts), sorted(ports), `${host.id}: guard rules for exactly those ports`);
    t.same(
      sorted(view.guestNetns),
      sorted(local.map((i) => i.netns as string)),
      `${host.id}: one namespace per instance, and no other`,
    );
  }
  return dir;
}
