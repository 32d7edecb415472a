// The admin socket's peer, by SO_PEERCRED (the addon, on a real socket) and
// from ss output and /proc: parsing of real ss rows
// (with and without the Netid column, names and paths with spaces, a socket
// shared by two processes), the adapter's steps through injected seams, its
// failures, and one lookup per connection.
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  type PeerCred,
  type PeerCredentials,
  parseSsUnix,
  parseStatusIds,
  peerOf,
  peerPid,
  SsPeerCredentials,
  socketInode,
} from '../../agent/api/peer-credentials.js';
import { defaultPeerCredentials, loadPeercred, SoPeerCredentials } from '../../agent/api/peercred-addon.js';
import type { CommandRunner } from '../../base/command.js';

// Captured from `ss -H -x -n -p -A unix_stream state connected` (iproute2 6.1) and `ss -xpn`.
const SS_A = `ESTAB 0      0                                         /tmp/peerexp/s.sock 14456 * 14455 users:(("node",pid=10443,fd=21))
ESTAB 0      0                                                           * 14455 * 14456 users:(("node",pid=10443,fd=20))
ESTAB 0      0                        /run/dir with space/berthd.sock 2001 * 2002 users:(("berthd",pid=7,fd=30))
ESTAB 0      0                                                     * 2002 * 2001 users:(("tmux: server",pid=900,fd=5),("bash",pid=77,fd=5))
ESTAB 0      0                                                     * 3003 * 3004
`;
const SS_X = `u_str ESTAB 0      0      /tmp/peerexp/s.sock 10889            * 10888 users:(("node",pid=8833,fd=21))
u_str ESTAB 0      0                        * 10888            * 10889 users:(("node",pid=8833,fd=20))
`;

t.test('ss rows: inode, peer inode and holders, read from both ends', async (t) => {
  t.same(parseSsUnix(SS_A), [
    { inode: 14456, peer: 14455, pids: [10443] },
    { inode: 14455, peer: 14456, pids: [10443] },
    { inode: 2001, peer: 2002, pids: [7] },
    { inode: 2002, peer: 2001, pids: [900, 77] },
    { inode: 3003, peer: 3004, pids: [] },
  ]);
  t.same(parseSsUnix(SS_X), [
    { inode: 10889, peer: 10888, pids: [8833] },
    { inode: 10888, peer: 10889, pids: [8833] },
  ]);
  t.same(parseSsUnix('garbage\n\nState Recv-Q Send-Q Local Address:Port Peer Address:Port\n'), []);
  const rows = parseSsUnix(SS_A);
  t.equal(peerPid(rows, 14456), 10443, 'the peer of the accepted socket');
  t.equal(peerPid(rows, 2001), 77, 'two holders (a fork after connect): the lowest pid');
  t.equal(peerPid(rows, 3003), undefined, 'a peer no process holds');
  t.equal(peerPid(rows, 9), undefined, 'an inode ss does not list');
});

t.test('/proc status and fd links', async (t) => {
  const status =
    'Name:\tberthctl\nPid:\t77\nUid:\t1000\t1001\t1001\t1001\nGid:\t995\t996\t996\t996\nGroups:\t995\n';
  t.same(parseStatusIds(status), { uid: 1001, gid: 996 }, 'effective ids, as SO_PEERCRED gives');
  t.equal(parseStatusIds('Name:\tx\n'), undefined);
  t.equal(socketInode('socket:[10889]'), 10889);
  t.equal(socketInode('pipe:[10889]'), undefined);
  t.equal(socketInode('/dev/null'), undefined);
});

t.test('the adapter: fd -> inode -> ss -> /proc, and its refusals', async (t) => {
  const calls: string[][] = [];
  const runner: CommandRunner = {
    run: async (argv) => {
      calls.push(argv);
      return { stdout: SS_A, stderr: '' };
    },
  };
  const links: Record<string, string> = {
    '/proc/self/fd/21': 'socket:[14456]',
    '/proc/self/fd/9': 'pipe:[1]',
  };
  const peers = new SsPeerCredentials({
    runner,
    readLink: async (p) => links[p] ?? Promise.reject(new Error(`ENOENT ${p}`)),
    readText: async (p) =>
      p === '/proc/10443/status' ? 'Uid:\t0\t0\t0\t0\nGid:\t995\t995\t995\t995\n' : 'Name:\tgone\n',
  });
  const sock = (fd?: number) => ({ _handle: fd === undefined ? undefined : { fd } }) as unknown as Socket;
  t.same(await peers.of(sock(21)), { pid: 10443, uid: 0, gid: 995 });
  t.same(calls, [['ss', '-H', '-x', '-n', '-p', '-A', 'unix_stream', 'state', 'connected']]);
  await t.rejects(peers.of(sock()), /the connection has no file descriptor/);
  await t.rejects(peers.of(sock(9)), /fd 9 is not a socket/);
  links['/proc/self/fd/22'] = 'socket:[3003]';
  await t.rejects(peers.of(sock(22)), /no process holds the peer of socket 3003/);
  links['/proc/self/fd/23'] = 'socket:[2001]';
  await t.rejects(peers.of(sock(23)), /\/proc\/77\/status has no Uid or Gid/);
});

t.test('peerOf asks once per connection and keeps a failure as an answer', async (t) => {
  let asked = 0;
  const peers: PeerCredentials = {
    of: async (s) => {
      asked++;
      if ((s as unknown as { bad?: boolean }).bad) throw new Error('ss failed');
      return { pid: 1, uid: 2, gid: 3 } satisfies PeerCred;
    },
  };
  const a = {} as Socket;
  const b = { bad: true } as unknown as Socket;
  t.same(await Promise.all([peerOf(peers, a), peerOf(peers, a)]), [
    { pid: 1, uid: 2, gid: 3 },
    { pid: 1, uid: 2, gid: 3 },
  ]);
  t.same(await peerOf(peers, b), { error: 'ss failed' });
  t.same(await peerOf(peers, b), { error: 'ss failed' });
  t.equal(asked, 2, 'one lookup per socket');
});

t.test('the addon: SO_PEERCRED on a real accepted connection names the connecting process', async (t) => {
  const fn = loadPeercred();
  if (fn instanceof Error) throw fn;
  const dir = await mkdtemp(join(tmpdir(), 'berth-peercred-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 's.sock');
  const accepted = new Promise<Socket>((resolve) => {
    const srv = createServer((c) => resolve(c));
    srv.listen(path);
    t.teardown(() => srv.close());
  });
  const client = connect(path);
  t.teardown(() => client.destroy());
  const conn = await accepted;
  t.teardown(() => conn.destroy());
  const me = { pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() };
  t.same(await new SoPeerCredentials(fn).of(conn), me, 'this process, as the kernel recorded it');
  t.same(defaultPeerCredentials().via, 'SO_PEERCRED', 'the default when the addon is built');
  t.throws(() => fn(-1), /Bad file descriptor/);
  t.throws(() => fn('x' as unknown as number), /fd must be an integer/);
  await t.rejects(new SoPeerCredentials(fn).of({} as Socket), /the connection has no file descriptor/);
});
