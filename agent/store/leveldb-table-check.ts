// Checks every block of a LevelDB table against its CRC. LevelDB reads with
// verify_checksums off and classic-level cannot turn it on, so a flipped byte
// inside a block is served as data (measured: 16 garbled bytes of a table
// came back as an instance's uuid, and berthd started on it), and the next
// compaction rewrites it under a fresh checksum. Reading the tables once
// before opening catches that; it costs one pass over them (tables are at
// most a few MB each; berth's store is small).
//
// Table layout (LevelDB's table_format.md): blocks, each followed by a type
// byte (0 raw, 1 snappy) and the masked CRC-32C of contents + type; a 48-byte
// footer holds the handles (varint offset, varint size) of the metaindex and
// index blocks; the index and metaindex map keys to block handles.
import { crc32c, unmaskCrc } from './crc32c.js';

const FOOTER = 48;
const TRAILER = 5;

class Reader {
  constructor(
    readonly buf: Uint8Array,
    public pos = 0,
  ) {}

  varint(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('varint runs past its block');
      const b = this.buf[this.pos++] as number;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
      if (scale > 2 ** 63) throw new Error('varint too long');
    }
  }
}

interface Handle {
  offset: number;
  size: number;
}

/** Snappy's raw format (what LevelDB compresses blocks with), decompressed. */
export function unsnappy(src: Uint8Array): Buffer {
  const r = new Reader(src);
  const out = Buffer.alloc(r.varint());
  let o = 0;
  while (r.pos < src.length) {
    const tag = src[r.pos++] as number;
    let len: number;
    let offset = 0;
    if ((tag & 3) === 0) {
      len = (tag >>> 2) + 1;
      if (len > 60) {
        const bytes = len - 60;
        len = 1;
        for (let i = 0; i < bytes; i++) len += (src[r.pos + i] as number) * 256 ** i;
        r.pos += bytes;
      }
      if (r.pos + len > src.length || o + len > out.length) throw new Error('snappy literal out of bounds');
      out.set(src.subarray(r.pos, r.pos + len), o);
      r.pos += len;
      o += len;
      continue;
    }
    if ((tag & 3) === 1) {
      len = ((tag >>> 2) & 7) + 4;
      offset = ((tag >>> 5) << 8) | (src[r.pos++] as number);
    } else {
      len = (tag >>> 2) + 1;
      const bytes = (tag & 3) === 2 ? 2 : 4;
      for (let i = 0; i < bytes; i++) offset += (src[r.pos + i] as number) * 256 ** i;
      r.pos += bytes;
    }
    if (offset === 0 || offset > o || o + len > out.length) throw new Error('snappy copy out of bounds');
    for (let i = 0; i < len; i++, o++) out[o] = out[o - offset] as number;
  }
  if (o !== out.length) throw new Error('snappy data shorter than its stated length');
  return out;
}

/** Checks a block's CRC (throws saying what is wrong); its contents, decompressed. */
function readBlock(table: Buffer, h: Handle, what: string): Buffer {
  const end = h.offset + h.size;
  if (end + TRAILER > table.length - FOOTER)
    throw new Error(`${what} block at ${h.offset} runs past the end of the table`);
  const type = table[end] as number;
  if (crc32c(table.subarray(h.offset, end + 1)) !== unmaskCrc(table.readUInt32LE(end + 1)))
    throw new Error(`${what} block at offset ${h.offset}: checksum mismatch`);
  const contents = table.subarray(h.offset, end);
  // Only the index and metaindex are read; a data block's CRC is all the check needs.
  if (type === 0 || what === 'data' || what === 'meta') return contents;
  if (type === 1) return unsnappy(contents);
  throw new Error(`${what} block at offset ${h.offset}: unknown compression type ${type}`);
}

/** The handles an index or metaindex block maps its keys to. */
function handlesIn(block: Buffer, what: string): Handle[] {
  if (block.length < 4) throw new Error(`${what} block is too short`);
  const restarts = block.readUInt32LE(block.length - 4);
  const limit = block.length - 4 - 4 * restarts;
  if (limit < 0) throw new Error(`${what} block has a bad restart count`);
  const r = new Reader(block.subarray(0, limit));
  const handles: Handle[] = [];
  while (r.pos < limit) {
    r.varint(); // bytes shared with the previous key
    const keyLength = r.varint();
    const valueLength = r.varint();
    r.pos += keyLength;
    const value = new Reader(r.buf.subarray(r.pos, r.pos + valueLength));
    handles.push({ offset: value.varint(), size: value.varint() });
    r.pos += valueLength;
  }
  return handles;
}

/** What is wrong with a table's blocks, or undefined when every CRC matches. */
export function tableDamage(table: Buffer): string | undefined {
  try {
    const footer = new Reader(table.subarray(table.length - FOOTER));
    const meta = { offset: footer.varint(), size: footer.varint() };
    const index = { offset: footer.varint(), size: footer.varint() };
    for (const h of handlesIn(readBlock(table, index, 'index'), 'index')) readBlock(table, h, 'data');
    for (const h of handlesIn(readBlock(table, meta, 'metaindex'), 'metaindex')) readBlock(table, h, 'meta');
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
