// How much disk a guest's serial console can take. The console is a file
// chardev in the domain XML (domain-xml.ts), which libvirt hands to virtlogd
// unless qemu.conf says `stdio_handler = "file"`: then QEMU writes it itself,
// with no limit at all. virtlogd caps each file at max_size and keeps
// max_backups older files (serial.log.0, .1, …), so the newest output is
// always in serial.log and a guest printing without end holds at most
// max_size × (max_backups + 1) bytes. max_size = 0 turns rotation off.
//
// scripts/libvirt-up.sh sets both values explicitly; berthd reads them back
// when it connects to libvirt and logs the cap, or warns that there is none,
// so the bound in effect is never a guess. The cap is virtlogd's, host-wide
// (it also rotates libvirt's own per-domain logs), so it is configured there
// and not in berthd.yaml: berthd cannot change what virtlogd enforces.
import { readFile } from 'node:fs/promises';

export const VIRTLOGD_CONF = '/etc/libvirt/virtlogd.conf';
export const QEMU_CONF = '/etc/libvirt/qemu.conf';

/** virtlogd's defaults, used when its config leaves a value out (libvirt 9). */
const DEFAULT_MAX_SIZE = 2 * 1024 * 1024;
const DEFAULT_MAX_BACKUPS = 3;

export type SerialLogCap =
  | { bounded: true; maxFileBytes: number; backups: number; totalBytes: number }
  | { bounded: false; reason: string };

/** The value of `key = value` in a libvirt config file (comments skipped), quotes removed. */
export function confValue(text: string, key: string): string | undefined {
  let found: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    const m = /^([a-z_]+)\s*=\s*(.+)$/.exec(line);
    if (m && m[1] === key) found = (m[2] as string).trim().replace(/^"(.*)"$/, '$1');
  }
  return found; // the last assignment wins, as in libvirt's parser
}

/** The cap that virtlogd and QEMU's config put on one guest's serial log. */
export function serialLogCap(virtlogdConf: string, qemuConf: string): SerialLogCap {
  const handler = confValue(qemuConf, 'stdio_handler') ?? 'logd';
  if (handler !== 'logd')
    return {
      bounded: false,
      reason: `qemu.conf has stdio_handler = "${handler}": QEMU writes console files itself, without rotation`,
    };
  const size = Number(confValue(virtlogdConf, 'max_size') ?? DEFAULT_MAX_SIZE);
  const backups = Number(confValue(virtlogdConf, 'max_backups') ?? DEFAULT_MAX_BACKUPS);
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(backups) || size < 0 || backups < 0)
    return { bounded: false, reason: 'virtlogd.conf has a max_size or max_backups that is not a number' };
  if (size === 0) return { bounded: false, reason: 'virtlogd.conf has max_size = 0: rotation is off' };
  return { bounded: true, maxFileBytes: size, backups, totalBytes: size * (backups + 1) };
}

/** Reads both files (a missing one counts as empty: libvirt's defaults apply). */
export async function readSerialLogCap(
  paths: { virtlogd: string; qemu: string } = { virtlogd: VIRTLOGD_CONF, qemu: QEMU_CONF },
  read: (path: string) => Promise<string> = (p) => readFile(p, 'utf8'),
): Promise<SerialLogCap> {
  const [v, q] = await Promise.all([read(paths.virtlogd).catch(() => ''), read(paths.qemu).catch(() => '')]);
  return serialLogCap(v, q);
}
