// A cluster on one machine for tests: a real three-member etcd on loopback and
// several real berthd processes, each with its own host id, name prefix, state
// dir and socket, all in cluster mode on one key prefix.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { EtcdKv } from '../../agent/store/etcd-kv.js';
import { type RunningBerthd, startBerthd } from './berthd.js';
import { EtcdMembers } from './etcd-members.js';

export interface ClusterHost extends RunningBerthd {
  id: string;
  prefix: string;
}

export interface ClusterLab {
  etcd: EtcdMembers;
  /** A client of the cluster's key space, as berthd sees it (same prefix). */
  kv: EtcdKv;
  keyPrefix: string;
  hosts: ClusterHost[];
  /** Starts one more berthd (or the same host id again, on its old state dir). */
  startHost(
    id: string,
    opts?: { stateDir?: string; prefix?: string; socket?: string; extra?: string },
  ): Promise<ClusterHost>;
}

export function clusterConfig(
  id: string,
  etcd: string[],
  keyPrefix: string,
  extra = 'networks:\n  - name: shared\n    subnet: 10.251.0.0/24\n',
): string {
  return [
    `host_id: ${id}`,
    'cluster:',
    `  etcd: [${etcd.join(', ')}]`,
    `  prefix: ${keyPrefix}`,
    '  lease_seconds: 3',
    'quarantine:',
    '  mac_seconds: 3600',
    '  ip_seconds: 600',
    extra,
  ].join('\n');
}

/** extra: more YAML for every host, or per host (a host's own physical_networks). */
export async function startClusterLab(
  t: Test,
  hostIds: string[],
  extra?: string | ((id: string) => string),
): Promise<ClusterLab> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-cluster-'));
  const etcd = await EtcdMembers.start(dir, 3);
  t.teardown(() => etcd.stop());
  const keyPrefix = `/c${process.pid}${Math.random().toString(16).slice(2, 6)}/`;
  const kv = new EtcdKv({ endpoints: etcd.endpoints, prefix: keyPrefix });
  t.teardown(() => kv.close());
  const lab: ClusterLab = {
    etcd,
    kv,
    keyPrefix,
    hosts: [],
    async startHost(id, opts = {}) {
      const b = await startBerthd(t, {
        config: clusterConfig(
          id,
          etcd.endpoints,
          keyPrefix,
          opts.extra ?? (typeof extra === 'function' ? extra(id) : extra),
        ),
        ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
        ...(opts.prefix ? { prefix: opts.prefix } : {}),
        ...(opts.socket ? { socket: opts.socket } : {}),
      });
      const host = Object.assign(b, { id });
      const at = lab.hosts.findIndex((h) => h.id === id);
      if (at >= 0) lab.hosts[at] = host;
      else lab.hosts.push(host);
      return host;
    },
  };
  // One at a time: the first declares the config's networks, the rest find them.
  for (const id of hostIds) await lab.startHost(id);
  return lab;
}

export async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
