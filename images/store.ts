// The image store: content-addressed by SHA-256 under <state_dir>/images/<sha256>/.
// An image's hash is its identity (a policy can name `image:<sha256>`), so the
// bytes are hashed while they are copied in, and again before every boot:
// a file changed on disk refuses the create instead of booting something else.
//
// A `disk` image is one qcow2 or raw file, instantiated as a qcow2 overlay;
// it may carry a kernel, an initrd and a cmdline to boot it with (the
// Firecracker way, for disks without a bootloader). A `kernel` image (the test
// guest) is a kernel, an optional initrd and a cmdline. A disk alone hashes
// as its file; any other image as a manifest of its parts' hashes and its
// cmdline, so everything the guest boots is in its identity.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type CommandRunner, osCommandRunner } from '../base/command.js';
import { BerthError, couldNot } from '../base/errors.js';
import type { Store } from '../base/store.js';
import type { Image, ImageImport } from './image-types.js';
import { checkImportRequest, importKind, importSources } from './import-request.js';
import { type DiskFormat, inspectDisk } from './qemu-img.js';

export const IMAGE_PREFIX = 'image/';
export const IMAGE_NAME_PREFIX = 'image-name/';
const SHA = /^[0-9a-f]{64}$/;

export type ImageRecord = Image;
export type ImagePart = Image['parts'][number];

export interface ImportProgress {
  done: number;
  total: number;
}

/** Where an instance boots from, after verification. */
export type VerifiedImage =
  | {
      kind: 'disk';
      sha256: string;
      disk: string;
      format: DiskFormat;
      kernel?: string;
      initrd?: string;
      cmdline?: string;
    }
  | { kind: 'kernel'; sha256: string; kernel: string; initrd?: string; cmdline?: string };

/** Copies src to dst, hashing on the way; returns the hex digest and size. */
async function copyHashing(
  src: string,
  dst: string,
  onBytes: (n: number) => void,
): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const tee = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      onBytes(chunk.length);
      done(null, chunk);
    },
  });
  await pipeline(createReadStream(src, { highWaterMark: 1 << 20 }), tee, createWriteStream(dst));
  return { sha256: hash.digest('hex'), bytes };
}

export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash);
  return hash.digest('hex');
}

/** The hash of an image of several parts: their hashes and the cmdline, in a fixed order. */
export function manifestHash(parts: ImagePart[], cmdline: string | undefined): string {
  const lines = parts.map((p) => `${p.role} ${p.sha256} ${p.bytes}`);
  lines.push(`cmdline ${cmdline ?? ''}`);
  return createHash('sha256')
    .update(`berth-kernel-image-v1\n${lines.join('\n')}\n`)
    .digest('hex');
}

export interface ImageStoreOptions {
  store: Store;
  /** <state_dir>/images */
  dir: string;
  /** Names of instances using an image (by sha256); delete refuses while any do. */
  usedBy?: (sha256: string) => string[];
  /** Runs qemu-img (the disk's format and backing file). */
  runner?: CommandRunner;
}

export class ImageStore {
  constructor(private readonly o: ImageStoreOptions) {}

  async list(): Promise<ImageRecord[]> {
    const all = await this.o.store.list<ImageRecord>(IMAGE_PREFIX);
    return all.map((e) => this.withUse(e.value)).sort((a, b) => a.name.localeCompare(b.name));
  }

  private withUse(rec: ImageRecord): ImageRecord {
    return { ...rec, used_by: this.o.usedBy?.(rec.sha256) ?? [] };
  }

  /** By name or by sha256. */
  async get(ref: string): Promise<ImageRecord> {
    const sha = SHA.test(ref) ? ref : await this.o.store.get<string>(`${IMAGE_NAME_PREFIX}${ref}`);
    const rec = sha ? await this.o.store.get<ImageRecord>(`${IMAGE_PREFIX}${sha}`) : undefined;
    if (!rec) throw new BerthError('BERTH_ERR_NOT_FOUND', `could not find image "${ref}": no such image`);
    return this.withUse(rec);
  }

  /**
   * Checks what can be checked before any byte is copied; throws the refusal.
   * A disk's source is inspected here for an early answer; its copy again below.
   */
  async precheck(req: ImageImport): Promise<void> {
    await checkImportRequest(req);
    if (importKind(req) === 'disk') await this.inspect(req.name, req.path);
  }

  /** Copies the files in (hashing them), then records the image. Same name and same bytes: no-op. */
  async import(req: ImageImport, onProgress?: (p: ImportProgress) => void): Promise<ImageRecord> {
    await this.precheck(req);
    const kind = importKind(req);
    const sources = importSources(req);
    const sizes = await Promise.all(sources.map(async (s) => (await stat(s.path)).size));
    const total = sizes.reduce((a, b) => a + b, 0);
    const tmp = join(this.o.dir, `.import-${randomBytes(6).toString('hex')}`);
    await mkdir(tmp, { recursive: true });
    try {
      let done = 0;
      const parts: ImagePart[] = [];
      let format: DiskFormat | undefined;
      for (const s of sources) {
        let file: string = s.role;
        const r = await copyHashing(s.path, join(tmp, file), (n) => {
          done += n;
          onProgress?.({ done, total });
        });
        if (s.role === 'disk') {
          // The copy is what counts: the bytes checked are the bytes kept.
          format = await this.inspect(req.name, join(tmp, file));
          await rename(join(tmp, file), join(tmp, `disk.${format}`));
          file = `disk.${format}`;
        }
        parts.push({ role: s.role, file, sha256: r.sha256, bytes: r.bytes });
      }
      // A disk alone is named by its bytes, so its hash is what `sha256sum` says.
      const alone = kind === 'disk' && parts.length === 1;
      const sha256 = alone ? (parts[0] as ImagePart).sha256 : manifestHash(parts, req.cmdline);
      const existingSha = await this.o.store.get<string>(`${IMAGE_NAME_PREFIX}${req.name}`);
      if (existingSha === sha256) return await this.get(sha256);
      if (existingSha !== undefined)
        throw couldNot(
          'BERTH_ERR_ALREADY_EXISTS',
          'import',
          'image',
          req.name,
          `an image with that name exists (sha256 ${existingSha}); delete it first or choose another name`,
          { field: 'name' },
        );
      const other = await this.o.store.get<ImageRecord>(`${IMAGE_PREFIX}${sha256}`);
      if (other)
        throw couldNot(
          'BERTH_ERR_ALREADY_EXISTS',
          'import',
          'image',
          req.name,
          `the same bytes are image "${other.name}"`,
        );
      const rec: ImageRecord = {
        name: req.name,
        sha256,
        kind,
        bytes: total,
        parts,
        created_at: new Date().toISOString(),
        source: req.path,
        ...(format ? { format } : {}),
        ...(req.cmdline !== undefined ? { cmdline: req.cmdline } : {}),
      };
      const final = join(this.o.dir, sha256);
      for (const p of parts) await chmod(join(tmp, p.file), 0o444);
      await rm(final, { recursive: true, force: true });
      await rename(tmp, final);
      await this.o.store.batch(
        [
          { type: 'put', key: `${IMAGE_PREFIX}${sha256}`, value: rec },
          { type: 'put', key: `${IMAGE_NAME_PREFIX}${req.name}`, value: sha256 },
        ],
        { guards: [{ key: `${IMAGE_NAME_PREFIX}${req.name}`, absent: true }] },
      );
      return this.withUse(rec);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** The disk's format by qemu-img; a backing file, data file or other format refuses the import. */
  private async inspect(name: string, path: string): Promise<DiskFormat> {
    try {
      return (await inspectDisk(path, this.o.runner ?? osCommandRunner)).format;
    } catch (err) {
      throw couldNot('BERTH_ERR_INVALID_ARGUMENT', 'import', 'image', name, err, { field: 'path' });
    }
  }

  pathOf(rec: ImageRecord, part: ImagePart): string {
    return join(this.o.dir, rec.sha256, part.file);
  }

  /**
   * Hashes every file of the image again. `forWhat` names the instance in the
   * refusal: could not create instance "x": image "test" (sha256 …) does not match its hash.
   */
  async verify(ref: string, forWhat: { verb: string; instance: string }): Promise<VerifiedImage> {
    const rec = await this.get(ref);
    const refuse = (why: string) =>
      couldNot(
        'BERTH_ERR_CONFLICT',
        forWhat.verb,
        'instance',
        forWhat.instance,
        `image "${rec.name}" (sha256 ${rec.sha256}) ${why}`,
      );
    const paths: Record<string, string> = {};
    for (const part of rec.parts) {
      const path = this.pathOf(rec, part);
      let sha: string;
      try {
        sha = await hashFile(path);
      } catch (err) {
        throw refuse(`cannot be read: ${(err as Error).message}`);
      }
      if (sha !== part.sha256) throw refuse('does not match its hash; it was modified on disk');
      paths[part.role] = path;
    }
    const boot = {
      ...(paths.initrd ? { initrd: paths.initrd } : {}),
      ...(rec.cmdline !== undefined ? { cmdline: rec.cmdline } : {}),
    };
    if (rec.kind === 'disk')
      return {
        kind: 'disk',
        sha256: rec.sha256,
        disk: paths.disk as string,
        format: rec.format ?? 'raw',
        ...(paths.kernel ? { kernel: paths.kernel } : {}),
        ...boot,
      };
    return { kind: 'kernel', sha256: rec.sha256, kernel: paths.kernel as string, ...boot };
  }

  async delete(ref: string): Promise<void> {
    const rec = await this.get(ref);
    const users = this.o.usedBy?.(rec.sha256) ?? [];
    if (users.length > 0)
      throw couldNot(
        'BERTH_ERR_CONFLICT',
        'delete',
        'image',
        rec.name,
        `instance(s) ${users.map((u) => `"${u}"`).join(', ')} use it`,
      );
    await this.o.store.batch([
      { type: 'del', key: `${IMAGE_PREFIX}${rec.sha256}` },
      { type: 'del', key: `${IMAGE_NAME_PREFIX}${rec.name}` },
    ]);
    await rm(join(this.o.dir, rec.sha256), { recursive: true, force: true });
  }
}
