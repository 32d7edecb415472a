// The image store over a real directory and the in-memory store: hashing on
// import, the kernel manifest hash, re-verification, names, delete in use.
import { createHash } from 'node:crypto';
import { mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { MemoryStore } from '../../agent/store/memory-store.js';
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
  const q = Buffer.alloc(64);
  q.writeUInt32BE(0x514649fb, 0);
  q.writeBigUInt64BE(512n, 8);
  await writeFile(join(dir, 'b.qcow2'), q);
  await t.rejects(images.import({ path: join(dir, 'b.qcow2'), name: 'b' }), { message: /backing file/ });
  await images.import({ path: src, name: 'a' });
  await t.rejects(images.delete('a'), { code: 'BERTH_ERR_CONFLICT', message: /"g1" use it/ });
  await t.rejects(images.get('zzz'), { code: 'BERTH_ERR_NOT_FOUND' });
});
