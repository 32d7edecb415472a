// The admin socket's file-system side: replace a stale socket, refuse to
// steal a live one, and leave the socket 0660 root:<group>.
import { chmod, chown, lstat, mkdir, readFile, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { BerthError, causeText } from '../../base/errors.js';

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ path });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** Makes path free for listen(): a dead socket is removed, a live one or a non-socket is an error. */
export async function prepareSocketPath(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const stat = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new BerthError('BERTH_ERR_HOST_OP', `could not inspect socket "${path}": ${causeText(err)}`, {
      cause: err,
    });
  });
  if (!stat) return;
  if (!stat.isSocket()) {
    throw new BerthError(
      'BERTH_ERR_SOCKET_IN_USE',
      `could not listen on socket "${path}": a non-socket file is in the way; remove it`,
    );
  }
  if (await answers(path)) {
    throw new BerthError(
      'BERTH_ERR_SOCKET_IN_USE',
      `could not listen on socket "${path}": another process answers there; is berthd already running?`,
    );
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** The gid of a group from /etc/group, or undefined when there is no such group. */
export async function groupId(name: string, groupFile = '/etc/group'): Promise<number | undefined> {
  const text = await readFile(groupFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [group, , gid] = line.split(':');
    if (group === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

/** Sets mode 0660 and, when the group exists, owner root:group. Returns the gid used. */
export async function secureSocket(path: string, group: string): Promise<number | undefined> {
  await chmod(path, 0o660);
  const gid = await groupId(group);
  if (gid !== undefined && process.getuid?.() === 0) await chown(path, 0, gid);
  return gid;
}
