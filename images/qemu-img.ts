// qemu-img, the one tool that reads disk formats the way QEMU will: what an
// imported disk is (format, backing file, external data file), and the qcow2
// overlay each instance boots from.
//
// An imported disk is untrusted. A qcow2 may name a backing file or an
// external data file anywhere on this host (/etc/shadow, another guest's
// disk), and QEMU would open it for the guest: such images are refused, not
// followed. qemu-img info opens an image without its backing chain, and runs
// under prlimit, as OpenStack does since a crafted image could make it eat
// memory or CPU (CVE-2015-5162).
import { type CommandRunner, osCommandRunner } from '../base/command.js';

export type DiskFormat = 'qcow2' | 'raw';

export interface DiskInfo {
  format: DiskFormat;
  virtualBytes: number;
}

/** What `qemu-img info --output=json` says, as far as berth reads it. */
interface QemuImgInfo {
  format?: string;
  'virtual-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'format-specific'?: { type?: string; data?: { 'data-file'?: string; corrupt?: boolean } };
}

/** qemu-img info's limits: 1 GiB of address space, 30 s of CPU. */
const INFO_LIMITS = ['prlimit', '--as=1073741824', '--cpu=30', '--'];

/** The refusal, if any, for an image described by qemu-img info; undefined when it may be imported. */
export function refuseDisk(info: QemuImgInfo): string | undefined {
  const backing = info['backing-filename'] ?? info['full-backing-filename'];
  if (backing !== undefined)
    return (
      `it has a backing file ("${backing}", qemu-img info's backing-filename), which could name any file on this host; ` +
      'flatten it first: qemu-img convert -O qcow2 FILE NEW-FILE'
    );
  const data = info['format-specific']?.data;
  if (data?.['data-file'] !== undefined)
    return (
      `it has an external data file ("${data['data-file']}", qemu-img info's format-specific.data.data-file); ` +
      'convert it to a self-contained qcow2 first: qemu-img convert -O qcow2 FILE NEW-FILE'
    );
  if (data?.corrupt === true)
    return 'qemu-img marks it corrupt (format-specific.data.corrupt); repair it first';
  if (info.format !== 'qcow2' && info.format !== 'raw')
    return `its format is ${info.format ?? 'unknown'}; berth takes qcow2 or raw: qemu-img convert -O qcow2 FILE NEW-FILE`;
  return undefined;
}

/** Format and size of a disk; throws an Error whose message says why it cannot be used. */
export async function inspectDisk(path: string, runner: CommandRunner = osCommandRunner): Promise<DiskInfo> {
  let info: QemuImgInfo;
  try {
    const { stdout } = await runner.run([...INFO_LIMITS, 'qemu-img', 'info', '--output=json', path], {
      timeoutMs: 60_000,
    });
    info = JSON.parse(stdout) as QemuImgInfo;
  } catch (err) {
    throw new Error(`qemu-img cannot read it: ${(err as Error).message}`, { cause: err });
  }
  const why = refuseDisk(info);
  if (why) throw new Error(why);
  return { format: info.format as DiskFormat, virtualBytes: info['virtual-size'] ?? 0 };
}

/**
 * A qcow2 overlay at `path` on the base image: the guest writes go to the
 * overlay, the base (the store's content-addressed file) is only read. The
 * base's format is given (-F), never probed: probing a raw image whose
 * guest wrote a qcow2 header into it is how a guest reads host files.
 */
export async function createOverlay(
  base: { path: string; format: DiskFormat },
  path: string,
  runner: CommandRunner = osCommandRunner,
): Promise<void> {
  await runner.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base.path, '-F', base.format, path], {
    timeoutMs: 60_000,
  });
}
