// The image store over a real directory and the in-memory store: hashing on
// import, the kernel manifest hash, re-verification, names, delete in use;
// real qemu-img for disk formats, backing files and overlays.
import { createHash } from 'node:crypto';
import { mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { MemoryStore } from '../../agent/store/memory-store.js';
import { osCommandRunner } from '../../base/command.js';
import { createOverlay, refuseDisk } from '../../images/qemu-img.js';
import { hashFile, ImageStore, manifestHash } from '../../images/store.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

async function setup(t: Test, used: string[] = []) {
  const dir = await mkdtemp(join(tmpdir(), 'img-unit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  const images = new ImageStore({ store, dir: join(dir, 'images'), usedBy: () => used });
  return { dir, store, images };
}

t.test('a raw disk is copied, hashed, named, verified and deleted', async (t) => {
  const { dir, store, images } = await setup(t);
  const body = Buffer.alloc(3 * 1024 * 1024 + 7, 0x5a);
  const src = join(dir, 'disk.raw');
  await writeFile(src, body);
  const seen: number[] = [];
  const img = await images.import({ path: src, name: 'd1' }, (p) => seen.push(p.done));
  t.equal(img.sha256, sha(body), 'the sha256 is the bytes');
  t.equal(img.kind, 'disk');
  t.equal(img.format, 'raw');
  t.equal(seen.at(-1), body.length, 'progress reaches the total');
  const stored = join(dir, 'images', img.sha256, 'disk.raw');
  t.equal(await hashFile(stored), img.sha256, 'stored under images/<sha256>/');
  t.equal((await stat(stored)).mode & 0o777, 0o444, 'read-only');
  t.same(await store.get('image-name/d1'), img.sha256, 'name index');
  t.equal((await images.get(img.sha256)).name, 'd1', 'found by sha256');
  t.same(await images.import({ path: src, name: 'd1' }), img, 'same name and bytes: idempotent');
  await t.rejects(images.import({ path: src, name: 'd2' }), { code: 'BERTH_ERR_ALREADY_EXISTS' });
  await writeFile(src, Buffer.from('other'));
  await t.rejects(images.import({ path: src, name: 'd1' }), {
    code: 'BERTH_ERR_ALREADY_EXISTS',
    message: /an image with that name exists/,
  });
  const v = await images.verify('d1', { verb: 'create', instance: 'g1' });
  t.equal(v.kind === 'disk' && v.disk, stored);
  await images.delete('d1');
  t.same(await images.list(), []);
  t.same(await readdir(join(dir, 'images')), [], 'nothing left on disk');
});

t.test('a flipped byte is refused with the image-hash error', async (t) => {
  const { dir, images } = await setup(t);
  const src = join(dir, 'k');
  await writeFile(src, Buffer.alloc(4096, 1));
  await writeFile(join(dir, 'i'), Buffer.alloc(100, 2));
  const img = await images.import({
    path: src,
    name: 'test',
    initrd: join(dir, 'i'),
    cmdline: 'console=ttyS0',
  });
  t.equal(img.kind, 'kernel');
  t.equal(img.sha256, manifestHash(img.parts, 'console=ttyS0'), 'a kernel image hashes its manifest');
  const initrd = join(dir, 'images', img.sha256, 'initrd');
  const fh = await open(initrd, 'r+');
  await fh.write(Buffer.from([0xff]), 0, 1, 50);
  await fh.close();
  await t.rejects(images.verify('test', { verb: 'create', instance: 'x' }), {
    code: 'BERTH_ERR_CONFLICT',
    message: `could not create instance "x": image "test" (sha256 ${img.sha256}) does not match its hash; it was modified on disk`,
  });
});

t.test('refusals: bad names, relative paths, missing files, qcow2 with backing, in use', async (t) => {
  const { dir, images } = await setup(t, ['g1']);
  const src = join(dir, 'x');
  await writeFile(src, 'x');
  await t.rejects(images.import({ path: src, name: 'Bad Name' }), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'name',
  });
  await t.rejects(images.import({ path: 'rel/x', name: 'a' }), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'path',
  });
  await t.rejects(images.import({ path: join(dir, 'nope'), name: 'a' }), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'path',
  });
  await t.rejects(images.import({ path: src, name: 'a', kind: 'disk', cmdline: 'x' }), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'kind',
  });
  await images.import({ path: src, name: 'a' });
  await t.rejects(images.delete('a'), { code: 'BERTH_ERR_CONFLICT', message: /"g1" use it/ });
  await t.rejects(images.get('zzz'), { code: 'BERTH_ERR_NOT_FOUND' });
});

const qemuImg = (...args: string[]) => osCommandRunner.run(['qemu-img', ...args]);

t.test('qemu-img decides the format; backing files, data files and other formats are refused', async (t) => {
  const { dir, images } = await setup(t);
  const base = join(dir, 'base.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', base, '16M');
  const img = await images.import({ path: base, name: 'q' });
  t.equal(img.format, 'qcow2');
  t.equal(img.parts[0]?.file, 'disk.qcow2');
  t.equal(img.sha256, await hashFile(base), 'a disk alone is named by its bytes');

  // A backing file could name any file on the host: refused, naming the field and qemu-img's field.
  const backed = join(dir, 'backed.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/shadow', '-F', 'raw', backed, '16M');
  await t.rejects(images.import({ path: backed, name: 'b' }), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'path',
    message:
      /^could not import image "b": it has a backing file \("\/etc\/shadow", qemu-img info's backing-filename\)/,
  });
  const dataFile = join(dir, 'df.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${join(dir, 'df.raw')}`, dataFile, '1M');
  await t.rejects(images.import({ path: dataFile, name: 'c' }), {
    field: 'path',
    message: /external data file .*format-specific\.data\.data-file/,
  });
  const vmdk = join(dir, 'v.vmdk');
  await qemuImg('create', '-q', '-f', 'vmdk', vmdk, '1M');
  await t.rejects(images.import({ path: vmdk, name: 'v' }), { field: 'path', message: /format is vmdk/ });
  t.same(
    (await readdir(join(dir, 'images'))).filter((f) => f !== img.sha256),
    [],
    'refused imports leave nothing behind',
  );
  t.equal(
    refuseDisk({ format: 'qcow2', 'format-specific': { data: { corrupt: true } } })?.includes('corrupt'),
    true,
  );
  t.equal(refuseDisk({ format: 'raw' }), undefined);

  // An overlay names the store's file as its backing, with the format given, not probed.
  const v = await images.verify('q', { verb: 'create', instance: 'g' });
  const overlay = join(dir, 'overlay.qcow2');
  await createOverlay({ path: v.kind === 'disk' ? v.disk : '', format: 'qcow2' }, overlay);
  const info = JSON.parse((await qemuImg('info', '--output=json', overlay)).stdout);
  t.equal(info['backing-filename'], join(dir, 'images', img.sha256, 'disk.qcow2'));
  t.equal(info['backing-filename-format'], 'qcow2');
});

t.test('a disk with a kernel, initrd and cmdline: one image, hashed as a manifest', async (t) => {
  const { dir, images } = await setup(t);
  const disk = join(dir, 'root.qcow2');
  await qemuImg('create', '-q', '-f', 'qcow2', disk, '8M');
  await writeFile(join(dir, 'vmlinux'), Buffer.alloc(8192, 3));
  await writeFile(join(dir, 'initrd'), Buffer.alloc(512, 4));
  const req = {
    path: disk,
    name: 'fc',
    kernel: join(dir, 'vmlinux'),
    initrd: join(dir, 'initrd'),
    cmdline: 'root=/dev/vda',
  };
  const img = await images.import(req);
  t.equal(img.kind, 'disk', 'a kernel flag makes a disk that boots with it');
  t.same(
    img.parts.map((p) => `${p.role}:${p.file}`),
    ['disk:disk.qcow2', 'kernel:kernel', 'initrd:initrd'],
  );
  t.equal(img.sha256, manifestHash(img.parts, 'root=/dev/vda'), 'everything it boots is in its hash');
  const v = await images.verify('fc', { verb: 'create', instance: 'g' });
  t.same(v, {
    kind: 'disk',
    sha256: img.sha256,
    disk: join(dir, 'images', img.sha256, 'disk.qcow2'),
    format: 'qcow2',
    kernel: join(dir, 'images', img.sha256, 'kernel'),
    initrd: join(dir, 'images', img.sha256, 'initrd'),
    cmdline: 'root=/dev/vda',
  });
  await t.rejects(images.import({ ...req, name: 'k2', kind: 'kernel' }), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    field: 'kernel',
  });
  await t.rejects(images.import({ ...req, name: 'k3', kernel: 'vmlinux' }), {
    field: 'kernel',
    message: /kernel must be an absolute path/,
  });
  await t.rejects(images.import({ path: disk, name: 'k4', kind: 'disk', initrd: join(dir, 'initrd') }), {
    field: 'kind',
    message: /only with a kernel/,
  });
});
