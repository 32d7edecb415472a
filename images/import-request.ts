// What an image import asks for, checked before any byte is copied: the
// name, the kind (said or implied by the flags), and the files to copy in.
//
//   disk                     path = the disk (qcow2 or raw)
//   disk + kernel            path = the disk; kernel, initrd, cmdline boot it
//                            (the Firecracker way: no bootloader on the disk)
//   kernel                   path = the kernel; initrd, cmdline
import { stat } from 'node:fs/promises';
import { couldNot } from '../base/errors.js';
import type { Image, ImageImport } from './image-types.js';

export const IMAGE_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export interface ImportSource {
  role: Image['parts'][number]['role'];
  path: string;
}

/** A kernel flag makes a disk that boots with it; an initrd or cmdline alone makes a kernel image. */
export function importKind(req: ImageImport): Image['kind'] {
  if (req.kind) return req.kind;
  if (req.kernel !== undefined) return 'disk';
  return req.initrd !== undefined || req.cmdline !== undefined ? 'kernel' : 'disk';
}

/** The files to copy, in the order of the image's parts. */
export function importSources(req: ImageImport): ImportSource[] {
  const first: ImportSource[] =
    importKind(req) === 'disk'
      ? [
          { role: 'disk', path: req.path },
          ...(req.kernel !== undefined ? [{ role: 'kernel' as const, path: req.kernel }] : []),
        ]
      : [{ role: 'kernel', path: req.path }];
  return [...first, ...(req.initrd !== undefined ? [{ role: 'initrd' as const, path: req.initrd }] : [])];
}

/** Throws the refusal (naming the field) for a request that cannot be imported as asked. */
export async function checkImportRequest(req: ImageImport): Promise<void> {
  const refuse = (field: string, why: string) =>
    couldNot('BERTH_ERR_INVALID_ARGUMENT', 'import', 'image', req.name, why, { field });
  if (!IMAGE_NAME.test(req.name)) throw refuse('name', 'names are [a-z0-9][a-z0-9._-]*');
  const kind = importKind(req);
  if (kind === 'kernel' && req.kernel !== undefined)
    throw refuse('kernel', 'a kernel image is its path; --kernel boots a disk image');
  if (kind === 'disk' && req.kernel === undefined && (req.initrd !== undefined || req.cmdline !== undefined))
    throw refuse('kind', 'a disk image takes an initrd or cmdline only with a kernel to boot it (--kernel)');
  for (const [field, path] of [
    ['path', req.path],
    ['kernel', req.kernel],
    ['initrd', req.initrd],
  ] as const) {
    if (path === undefined) continue;
    if (!path.startsWith('/')) throw refuse(field, `${field} must be an absolute path`);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) throw refuse(field, `"${path}" is not a readable file`);
  }
}
