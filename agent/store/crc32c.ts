// CRC-32C (Castagnoli), the checksum of LevelDB's log records and table blocks.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

/** CRC-32C (Castagnoli), the checksum LevelDB uses. */
export function crc32c(buf: Uint8Array): number {
  const table = CRC_TABLE;
  let c = 0xffffffff;
  // An indexed loop: for..of over a Buffer is several times slower, and a store check reads every table.
  for (let i = 0; i < buf.length; i++) c = (table[(c ^ (buf[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** LevelDB stores checksums masked, so a CRC of data that holds CRCs stays well spread. */
export function unmaskCrc(masked: number): number {
  const rot = (masked - 0xa282ead8) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}
