// The caller of an admin request as the services judge it: SO_PEERCRED's uid
// and gid (peer-credentials.ts) plus the supplementary groups of the peer
// process from /proc/<pid>/status. SO_PEERCRED carries no supplementary
// groups; /proc is read while the peer holds the connection, and a process
// can only drop groups without CAP_SETGID, so what is read is never more
// than the caller had when it connected (unless it was privileged anyway).
import { readFile } from 'node:fs/promises';
import type { FastifyRequest } from 'fastify';
import type { Caller } from '../services/secgroup-join.js';
import { type PeerCredentials, peerOf } from './peer-credentials.js';

/** The `Groups:` line of /proc/<pid>/status; [] when there is none. */
export function parseGroups(status: string): number[] {
  const line = /^Groups:[ \t]*([0-9 \t]*)$/m.exec(status)?.[1] ?? '';
  return line
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n >= 0);
}

export class Callers {
  constructor(
    private readonly peers: PeerCredentials,
    private readonly groupsOf: (pid: number) => Promise<number[]> = async (pid) =>
      parseGroups(await readFile(`/proc/${pid}/status`, 'utf8')),
  ) {}

  async of(req: FastifyRequest): Promise<Caller> {
    const peer = await peerOf(this.peers, req.raw.socket);
    if ('error' in peer) return peer;
    // The peer gone already: its primary gid still counts, its other groups do not.
    const groups = await this.groupsOf(peer.pid).catch(() => [] as number[]);
    return { uid: peer.uid, gid: peer.gid, groups };
  }
}
