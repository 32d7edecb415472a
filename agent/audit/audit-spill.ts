// The audit log's reserve: a file of fixed size in the state dir, written
// full of zeros when berthd starts, so its blocks belong to it before the disk
// can fill. When the store refuses a write because the disk is full, audit
// records go here instead, into space already owned: a full state disk cannot
// silence refusals. When the store takes writes again they are moved into it
// with their own sequence numbers and times, and the file is zeroed.
//
// Why a file of its own and not room kept free inside LevelDB: what LevelDB
// needs to take one more write after a failure (rotate its log, flush the
// memtable to a table, compact) depends on its state, not on the record, so a
// reserve released to it has no size that is sure to be enough, and state
// writes would race the audit for it. A preallocated file rewritten in place
// needs no new blocks, and its bound is exact.
//
// Frames: u32 length, u32 CRC-32C of the body, a JSON AuditRecord. A frame of
// length 0 ends the file; a frame that fails its CRC (a write torn by a crash)
// ends it too. Not fsynced, like the store's audit writes: a written record is
// in the kernel, so kill -9 keeps it.
import { type FileHandle, open } from 'node:fs/promises';
import { crc32c } from '../store/crc32c.js';
import type { AuditRecord } from './audit-record.js';

/** 4 MiB: about 10,000 records of ~400 bytes (berthd.yaml audit.reserve_bytes). */
export const DEFAULT_SPILL_BYTES = 4 << 20;
const HEAD = 8;

export class AuditSpill {
  /** Records spilled and not yet moved into the store, oldest first. */
  readonly records: AuditRecord[] = [];

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    readonly capacity: number,
    private used: number,
  ) {}

  /** Opens (and on first use preallocates) the spill file; what it holds is in `records`. */
  static async open(path: string, capacity = DEFAULT_SPILL_BYTES): Promise<AuditSpill> {
    const fh = await open(path, 'a+').then(async (h) => {
      await h.close();
      return open(path, 'r+');
    });
    try {
      const size = (await fh.stat()).size;
      const buf = Buffer.alloc(size);
      if (size > 0) await fh.read(buf, 0, size, 0);
      const { records, used } = scan(buf);
      // A smaller reserve configured while records wait: they are kept all the same.
      const cap = Math.max(capacity, used);
      // Zeros from the last good frame on: real ones, not a hole or fallocate, so the
      // blocks are owned whatever the filesystem, and a torn frame is gone.
      await fh.write(Buffer.alloc(cap - used), 0, cap - used, used);
      if (size > cap) await fh.truncate(cap);
      await fh.datasync();
      const spill = new AuditSpill(fh, path, cap, used);
      spill.records.push(...records);
      return spill;
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Bytes still free. */
  get free(): number {
    return this.capacity - this.used;
  }

  /** The frame a record takes, for deciding what fits. */
  static frameSize(record: AuditRecord): number {
    return HEAD + Buffer.byteLength(JSON.stringify(record));
  }

  /** Writes records after those already spilled; false (nothing written) when they do not all fit. */
  async append(records: AuditRecord[]): Promise<boolean> {
    const frames = records.map((r) => {
      const body = Buffer.from(JSON.stringify(r));
      const head = Buffer.alloc(HEAD);
      head.writeUInt32BE(body.length, 0);
      head.writeUInt32BE(crc32c(body), 4);
      return Buffer.concat([head, body]);
    });
    const bytes = Buffer.concat(frames);
    if (bytes.length > this.free) return false;
    await this.fh.write(bytes, 0, bytes.length, this.used);
    this.used += bytes.length;
    this.records.push(...records);
    return true;
  }

  /** The records are in the store now: zero what they took (synced, so none comes back twice). */
  async clear(): Promise<void> {
    const used = this.used;
    // Forgotten here even if zeroing fails: the store has them, and a spill read
    // at the next start that the store already holds is dropped (audit-log.ts).
    this.used = 0;
    this.records.length = 0;
    if (used > 0) {
      await this.fh.write(Buffer.alloc(used), 0, used, 0);
      await this.fh.datasync();
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

function scan(buf: Buffer): { records: AuditRecord[]; used: number } {
  const records: AuditRecord[] = [];
  let at = 0;
  while (at + HEAD <= buf.length) {
    const len = buf.readUInt32BE(at);
    if (len === 0 || at + HEAD + len > buf.length) break;
    const body = buf.subarray(at + HEAD, at + HEAD + len);
    if (crc32c(body) !== buf.readUInt32BE(at + 4)) break;
    try {
      records.push(JSON.parse(body.toString('utf8')) as AuditRecord);
    } catch {
      break;
    }
    at += HEAD + len;
  }
  return { records, used: at };
}
