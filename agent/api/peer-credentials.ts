// Who is on the other end of an admin connection: pid, uid and gid of the
// process holding the peer socket. Node exposes no SO_PEERCRED, so the real
// adapter asks the kernel's sock_diag through iproute2: the accepted socket's
// inode (readlink /proc/self/fd/<fd>) -> `ss` gives the peer socket's inode and
// the processes holding it -> /proc/<pid>/status gives their Uid and Gid.
// This names the current holder, not the connect()-time credentials
// SO_PEERCRED gives, and it needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to see
// another uid's processes, so it is the fallback: peercred-addon.ts is the
// default. Either way the peer is asked once per connection and only for
// writes and refusals (admin-audit.ts).
import { readFile, readlink } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { type CommandRunner, osCommandRunner } from '../../base/command.js';
import { causeText } from '../../base/errors.js';

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** The seam: the real adapter below, a fixed answer in unit tests. */
export interface PeerCredentials {
  /** Rejects when the peer cannot be found (it hung up, ss failed). */
  of(socket: Socket): Promise<PeerCred>;
}

/** One unix socket as ss prints it: its inode, its peer's, and who holds it. */
export interface SsUnixRow {
  inode: number;
  peer: number;
  pids: number[];
}

// "ESTAB 0 0 /run/berth/berthd.sock 10889 * 10888 users:(("node",pid=8833,fd=21))"
// (with -A there is no Netid column). A process name may hold spaces and the
// local path too, so the users part is cut off first and the rest is read
// from the right: local inode, peer address, peer inode.
/** Parses `ss -H -x -n -p` output; rows it cannot read are skipped. */
export function parseSsUnix(text: string): SsUnixRow[] {
  const rows: SsUnixRow[] = [];
  for (const line of text.split('\n')) {
    const at = line.indexOf(' users:((');
    const head = (at < 0 ? line : line.slice(0, at)).trim().split(/\s+/);
    const [inode, , peer] = head.slice(-3);
    if (head.length < 7 || !/^\d+$/.test(inode ?? '') || !/^\d+$/.test(peer ?? '')) continue;
    const users = at < 0 ? '' : line.slice(at);
    const pids = [...users.matchAll(/,pid=(\d+),/g)].map((p) => Number(p[1]));
    rows.push({ inode: Number(inode), peer: Number(peer), pids: [...new Set(pids)] });
  }
  return rows;
}

/** The effective uid and gid from /proc/<pid>/status (the second column, as SO_PEERCRED reports). */
export function parseStatusIds(text: string): { uid: number; gid: number } | undefined {
  const uid = /^Uid:\s+\d+\s+(\d+)/m.exec(text)?.[1];
  const gid = /^Gid:\s+\d+\s+(\d+)/m.exec(text)?.[1];
  return uid === undefined || gid === undefined ? undefined : { uid: Number(uid), gid: Number(gid) };
}

/** The inode from a /proc/self/fd link of a socket: "socket:[10889]". */
export function socketInode(link: string): number | undefined {
  const m = /^socket:\[(\d+)\]$/.exec(link);
  return m ? Number(m[1]) : undefined;
}

/** The peer of `own` among ss rows; several holders (a fork after connect) yield the lowest pid. */
export function peerPid(rows: SsUnixRow[], own: number): number | undefined {
  const mine = rows.find((r) => r.inode === own);
  if (!mine) return undefined;
  const theirs = rows.find((r) => r.inode === mine.peer);
  return theirs && theirs.pids.length > 0 ? Math.min(...theirs.pids) : undefined;
}

export function socketFd(socket: Socket): number {
  // A libuv Pipe handle carries its fd; nothing in Node's public API reaches it.
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the connection has no file descriptor');
  return fd;
}

export interface SsPeerCredentialsOptions {
  runner?: CommandRunner;
  readLink?: (path: string) => Promise<string>;
  readText?: (path: string) => Promise<string>;
}

export class SsPeerCredentials implements PeerCredentials {
  private readonly runner: CommandRunner;
  private readonly readLink: (path: string) => Promise<string>;
  private readonly readText: (path: string) => Promise<string>;

  constructor(o: SsPeerCredentialsOptions = {}) {
    this.runner = o.runner ?? osCommandRunner;
    this.readLink = o.readLink ?? ((p) => readlink(p));
    this.readText = o.readText ?? ((p) => readFile(p, 'utf8'));
  }

  async of(socket: Socket): Promise<PeerCred> {
    const fd = socketFd(socket);
    const own = socketInode(await this.readLink(`/proc/self/fd/${fd}`));
    if (own === undefined) throw new Error(`fd ${fd} is not a socket`);
    // Connected unix stream sockets only: the admin socket's peers, and no listeners.
    const { stdout } = await this.runner.run(
      ['ss', '-H', '-x', '-n', '-p', '-A', 'unix_stream', 'state', 'connected'],
      {
        timeoutMs: 5000,
      },
    );
    const pid = peerPid(parseSsUnix(stdout), own);
    if (pid === undefined) throw new Error(`no process holds the peer of socket ${own}`);
    const ids = parseStatusIds(await this.readText(`/proc/${pid}/status`));
    if (!ids) throw new Error(`/proc/${pid}/status has no Uid or Gid`);
    return { pid, ...ids };
  }
}

const resolved = new WeakMap<Socket, Promise<PeerCred | { error: string }>>();

/** The peer of a connection, asked once and kept for its later requests; a failure is an answer too. */
export function peerOf(peers: PeerCredentials, socket: Socket): Promise<PeerCred | { error: string }> {
  let answer = resolved.get(socket);
  if (!answer) {
    answer = peers.of(socket).catch((err: unknown) => ({ error: causeText(err) }));
    resolved.set(socket, answer);
  }
  return answer;
}
