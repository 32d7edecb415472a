// What a failed LevelDB write leaves behind, and what it takes to write again.
//
// A write that fails part-way (ENOSPC, EIO) can leave a torn record at the end
// of LevelDB's log, and LevelDB 1.20 appends the next record after it. At the
// next open its reader drops the torn record and the rest of that block, so
// later writes that were acknowledged, fsync and all, vanish (measured: a
// tmpfs filled, a create refused, space freed, a synced write returned, a
// reopen, and that write was gone). So after a failed write berth writes
// nothing more until the log has been rotated, which needs some free space.
import { readdir, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BerthError, causeText } from '../../base/errors.js';
import type { GroupWriter } from './group-commit.js';

/** Headroom beyond the log's own size: a table for the memtable, a manifest record. */
const MARGIN = 1 << 20;

export function isDiskFull(detail: string): boolean {
  return /No space left on device|Disk quota exceeded|ENOSPC|EDQUOT/i.test(detail);
}

/**
 * Free bytes in the store's filesystem, and what rotating the log needs: the
 * memtable (no larger than the log that holds it) becomes a table first.
 */
export async function roomToRecover(dbPath: string): Promise<{ free: number; needed: number }> {
  const fs = await statfs(dbPath);
  let logs = 0;
  for (const name of await readdir(dbPath)) {
    if (name.endsWith('.log')) logs += (await stat(join(dbPath, name))).size;
  }
  return { free: fs.bavail * fs.bsize, needed: logs + MARGIN };
}

/**
 * Wraps the store's writer: after a failed write, the next one first checks
 * there is room, then has the log rotated (rotate), then writes. Until then
 * every write is refused with what is wrong; reads are never held up.
 */
export function resumeAfterFailure(
  writer: GroupWriter,
  o: { dbPath: string; rotate: () => Promise<void> },
): GroupWriter {
  let failure: string | undefined;
  return {
    ...writer,
    async write(ops, sync) {
      if (failure !== undefined) {
        const { free, needed } = await roomToRecover(o.dbPath);
        if (free < needed) {
          const full = isDiskFull(failure);
          throw new BerthError(
            full ? 'BERTH_ERR_STORE_FULL' : 'BERTH_ERR_STORE_IO',
            `could not write key "${ops[0]?.key ?? ''}" in store "${o.dbPath}": ${full ? 'the disk is still full' : 'an earlier write failed'} (${free} bytes free, ${needed} needed to resume after "${failure}"); free space under ${dirname(o.dbPath)}`,
          );
        }
        await o.rotate();
        failure = undefined;
      }
      try {
        await writer.write(ops, sync);
      } catch (err) {
        failure = causeText(err);
        throw err;
      }
    },
  };
}
