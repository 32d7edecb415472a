// Which of LevelDB's files are live: the tables the current MANIFEST lists
// and the logs it has not yet retired. Only those are checked before open. A
// table left half-written by a compaction that was cut short (a stop, a
// crash) is not listed, LevelDB deletes it at open, and it is no sign of
// damage; checking it would refuse a healthy store.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

const BLOCK = 32768;
const HEADER = 7;
enum Fragment {
  Full = 1,
  First = 2,
  Middle = 3,
  Last = 4,
}
enum Tag {
  Comparator = 1,
  LogNumber = 2,
  NextFile = 3,
  LastSequence = 4,
  CompactPointer = 5,
  DeletedFile = 6,
  NewFile = 7,
  PrevLogNumber = 9,
}

export interface LiveFiles {
  tables: Set<number>;
  /** Logs numbered below this were compacted into tables and are deleted at open. */
  minLog: number;
  prevLog: number;
}

/** The whole records of a LevelDB log file (fragments joined); stops at a torn tail. */
export function logRecords(log: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let parts: Buffer[] = [];
  for (let block = 0; block < log.length; block += BLOCK) {
    const end = Math.min(block + BLOCK, log.length);
    for (let off = block; end - off >= HEADER; ) {
      const length = log.readUInt16LE(off + 4);
      const type = log[off + 6] as number;
      if ((type === 0 && length === 0) || off + HEADER + length > end) break;
      const data = log.subarray(off + HEADER, off + HEADER + length);
      if (type === Fragment.Full) out.push(data);
      else if (type === Fragment.First) parts = [data];
      else if (type === Fragment.Middle) parts.push(data);
      else if (type === Fragment.Last) {
        parts.push(data);
        out.push(Buffer.concat(parts));
        parts = [];
      }
      off += HEADER + length;
    }
  }
  return out;
}

class Reader {
  off = 0;
  constructor(private readonly buf: Buffer) {}
  get done(): boolean {
    return this.off >= this.buf.length;
  }
  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      const byte = this.buf[this.off++];
      if (byte === undefined) throw new Error('varint runs past the record');
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new Error('varint too long');
  }
  bytes(): void {
    const length = this.varint(); // read first: `off += varint()` would add to the old offset
    this.off += length;
  }
}

/** Applies every VersionEdit in the manifest; throws on a tag LevelDB would not write. */
export function liveFromManifest(manifest: Buffer): LiveFiles {
  const live: LiveFiles = { tables: new Set(), minLog: 0, prevLog: 0 };
  for (const record of logRecords(manifest)) {
    const r = new Reader(record);
    while (!r.done) {
      const tag = r.varint();
      switch (tag) {
        case Tag.Comparator:
          r.bytes();
          break;
        case Tag.LogNumber:
          live.minLog = r.varint();
          break;
        case Tag.PrevLogNumber:
          live.prevLog = r.varint();
          break;
        case Tag.NextFile:
        case Tag.LastSequence:
          r.varint();
          break;
        case Tag.CompactPointer:
          r.varint();
          r.bytes();
          break;
        case Tag.DeletedFile:
          r.varint();
          live.tables.delete(r.varint());
          break;
        case Tag.NewFile:
          r.varint();
          live.tables.add(r.varint());
          r.varint();
          r.bytes();
          r.bytes();
          break;
        default:
          throw new Error(`unknown version edit tag ${tag}`);
      }
    }
  }
  return live;
}

/** The live files of the store at dbPath; undefined when it has no CURRENT (a new store). */
export async function liveFiles(dbPath: string): Promise<LiveFiles | undefined> {
  let current: string;
  try {
    current = (await readFile(join(dbPath, 'CURRENT'), 'utf8')).trim();
  } catch {
    return undefined;
  }
  return liveFromManifest(await readFile(join(dbPath, current)));
}

/** "000123.ldb" -> 123 */
export function fileNumber(name: string): number {
  return Number.parseInt(name, 10);
}
