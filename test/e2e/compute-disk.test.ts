// A real qcow2 disk image (images/build-test-disk.sh) through berth: import
// (qemu-img decides the format; a backing file is refused), instances that
// boot from a qcow2 overlay on the store's file, the guest's own writes
// landing in its overlay and never in the image, and delete removing both
// domain and overlay. Two ways to boot the same disk: by itself (BIOS, the
// disk's MBR loader) and the Firecracker way (the image carries the kernel).
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Instance } from '../../agent/api/types.js';
import { hashFile } from '../../images/store.js';
import { ensureTestDisk, parseGuestLog } from '../../images/test-guest.js';
import { berthctl } from '../helpers/berthd.js';
import { domainsOf, guestReport, sh, startComputeLab, virsh, waitFor } from '../helpers/compute_lab.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (libvirtd, QEMU, bridges)');
  process.exit(0);
}
// Two TCG guests booting at once on a 2-core machine, then one of them again.
t.setTimeout(240_000);

/** Reads a file from the root partition of a qcow2, without booting or mounting it (debugfs). */
async function readFromDisk(qcow2: string, rootLba: number, path: string, scratch: string): Promise<string> {
  const raw = join(scratch, 'disk.raw');
  const part = join(scratch, 'root.raw');
  await sh('qemu-img', 'convert', '-U', '-O', 'raw', qcow2, raw);
  await sh('dd', `if=${raw}`, `of=${part}`, 'bs=512', `skip=${rootLba}`, 'status=none');
  try {
    return (await sh('debugfs', '-R', `cat ${path}`, part)).stdout;
  } finally {
    await rm(raw, { force: true });
    await rm(part, { force: true });
  }
}

t.test('a qcow2 disk boots through its overlay, by itself and with its kernel', async (t) => {
  const { d, network, prefix } = await startComputeLab(t);
  const disk = await ensureTestDisk();
  const env = { BERTH_SOCKET: d.socket };
  const scratch = await mkdtemp(join(tmpdir(), `${prefix}-disk-`));
  t.teardown(() => rm(scratch, { recursive: true, force: true }));
  const diskSha = await hashFile(disk.disk);

  // A qcow2 whose backing file is a host file is refused before it is recorded.
  const evil = join(scratch, 'evil.qcow2');
  await sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/shadow', '-F', 'raw', evil, '1M');
  const refused = await berthctl(['image', 'import', evil, '--name', 'evil'], env);
  t.equal(refused.code, 1);
  t.match(
    refused.stderr,
    `could not import image "evil": it has a backing file ("/etc/shadow", qemu-img info's backing-filename)`,
  );

  const imp = await berthctl(['image', 'import', disk.disk, '--name', 'disk', '--json'], env);
  t.equal(imp.code, 0, imp.stderr);
  const img = JSON.parse(imp.stdout);
  t.equal(img.kind, 'disk');
  t.equal(img.format, 'qcow2', 'qemu-img says qcow2');
  t.equal(img.sha256, diskSha, "a disk alone is named by its file's sha256");
  const fc = await berthctl(
    [
      'image',
      'import',
      disk.disk,
      '--name',
      'disk-fc',
      '--kernel',
      disk.kernel,
      '--initrd',
      disk.initrd,
      '--cmdline',
      disk.cmdline,
      '--json',
    ],
    env,
  );
  t.equal(fc.code, 0, fc.stderr);
  const fcImg = JSON.parse(fc.stdout);
  t.same(
    fcImg.parts.map((p: { role: string }) => p.role),
    ['disk', 'kernel', 'initrd'],
    'the Firecracker-style image carries its kernel',
  );

  const t0 = Date.now();
  const create = (name: string, image: string) =>
    berthctl(
      ['instance', 'create', name, '--network', network, '--image', image, '--runtime', 'libvirt'],
      env,
    );
  const made = await Promise.all([create('self', 'disk'), create('fc', 'disk-fc')]);
  for (const m of made) t.equal(m.code, 0, m.stderr);
  const self = await d.client.instance('self');
  const fcg = await d.client.instance('fc');

  const [selfXml, fcXml] = await Promise.all([
    virsh('dumpxml', `${prefix}-self`),
    virsh('dumpxml', `${prefix}-fc`),
  ]);
  t.match(selfXml.stdout, "<boot dev='hd'/>", 'the disk boots by itself (BIOS, MBR)');
  t.notMatch(selfXml.stdout, '<kernel>');
  t.match(fcXml.stdout, `<kernel>${join(d.stateDir, 'images', fcImg.sha256, 'kernel')}</kernel>`);
  for (const [g, xml] of [
    [self, selfXml.stdout],
    [fcg, fcXml.stdout],
  ] as const)
    t.match(xml, `<source file='${join(d.stateDir, 'instances', g.id, 'disk.qcow2')}'`, 'vda is the overlay');

  const reports = await Promise.all(
    [self, fcg].map(async (g) => {
      const r = await guestReport(g.console_log as string, 150_000);
      t.comment(`${g.name}: metadata answer ${Date.now() - t0} ms after create began`);
      return r;
    }),
  );
  for (const [g, r] of [
    [self, reports[0]],
    [fcg, reports[1]],
  ] as const) {
    t.equal(r?.lease, g.nics[0]?.ip, `${g.name}: the lease is its fixed IP`);
    t.equal(r?.instanceId, g.id, `${g.name}: its own instance-id from metadata`);
  }

  // Each guest powers off by itself once it has written its marker.
  await waitFor(
    'both guests stopped',
    async () =>
      (await d.client.instance('self')).state === 'stopped' &&
      (await d.client.instance('fc')).state === 'stopped',
    60_000,
  );
  for (const [g, image] of [
    [self, img.sha256],
    [fcg, fcImg.sha256],
  ] as const) {
    const overlay = join(d.stateDir, 'instances', g.id, 'disk.qcow2');
    const info = JSON.parse((await sh('qemu-img', 'info', '-U', '--output=json', overlay)).stdout);
    t.equal(info.format, 'qcow2', `${g.name}: the overlay is a qcow2`);
    t.equal(info['backing-filename'], join(d.stateDir, 'images', image, 'disk.qcow2'), 'backed by the store');
    t.equal(info['backing-filename-format'], 'qcow2', 'with the format given, not probed');
    t.match(
      await readFromDisk(overlay, disk.rootLba, '/var/lib/berth-guest/marker', scratch),
      `instance-id=${g.id} boots=1`,
      `${g.name}: the guest's write is in its overlay`,
    );
  }
  const stored = join(d.stateDir, 'images', img.sha256, 'disk.qcow2');
  t.equal(await hashFile(stored), img.sha256, "the image's sha256 is unchanged after the guest wrote");
  t.equal(await hashFile(disk.disk), diskSha, 'and so is the built file');
  t.match(
    await readFromDisk(stored, disk.rootLba, '/sbin/init', scratch),
    '#!/bin/busybox sh',
    "the image's root filesystem reads (the control)",
  );
  t.equal(
    await readFromDisk(stored, disk.rootLba, '/var/lib/berth-guest/marker', scratch),
    '',
    'and has no marker',
  );

  // The overlay persists across a restart: the guest counts its second boot.
  // (The kernel-carrying guest: it skips the bzImage's decompression, seconds under TCG.)
  const t1 = Date.now();
  const started = await berthctl(['instance', 'start', 'fc'], env);
  t.equal(started.code, 0, started.stderr);
  const again = await waitFor(
    'the second boot',
    async () => {
      const r = parseGuestLog(await readFile(fcg.console_log as string, 'utf8').catch(() => ''));
      return r.disk?.boots === 2 ? r : undefined;
    },
    120_000,
  );
  t.equal(again.disk?.root, '/dev/vda1', 'the second boot counted on the same overlay');
  t.comment(`second boot wrote its marker ${Date.now() - t1} ms after start`);

  for (const g of [self, fcg]) {
    const del = await berthctl(['instance', 'delete', g.name], env);
    t.equal(del.code, 0, del.stderr);
    await t.rejects(stat(join(d.stateDir, 'instances', g.id)), `${g.name}: overlay and serial log removed`);
  }
  t.same(await domainsOf(prefix), [], 'no domain left');
  t.equal(await hashFile(stored), img.sha256, 'the image is still intact');

  // The image is verified before every create: one flipped byte refuses it.
  const fh = await open(stored, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, 4096);
  await fh.write(Buffer.from([(b[0] as number) ^ 0xff]), 0, 1, 4096);
  await fh.close();
  const bad = await create('bad', 'disk');
  t.equal(bad.code, 1);
  t.match(bad.stderr, `image "disk" (sha256 ${img.sha256}) does not match its hash`);
  t.same((await d.client.instances()).instances as Instance[], [], 'nothing was created');
});
