// A guest that floods its serial console cannot fill the host's disk. A real
// guest (TCG) booted with berth.flood=N writes N MiB of numbered lines to
// ttyS0, four times the cap that scripts/libvirt-up.sh gives virtlogd, then
// its usual end marker. While it writes, the instance's console files are
// sampled every 100 ms: no file is ever over virtlogd's max_size, there are
// never more than max_backups + 1 of them, and the total never exceeds the
// cap. At the end the newest output (the last flood line and the end marker)
// is in serial.log and the oldest lines are gone.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { readSerialLogCap } from '../../agent/compute/serial-log-cap.js';
import { startComputeLab, waitFor } from '../helpers/compute_lab.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (libvirtd, QEMU, bridges)');
  process.exit(0);
}
t.setTimeout(300_000);

const LINE_BYTES = 129; // 128 written by the guest, plus the tty's \r
const LINES_PER_MIB = 8192;

interface Sample {
  files: number;
  largest: number;
  total: number;
}

async function sample(dir: string): Promise<Sample> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith('serial.log'));
  const sizes = await Promise.all(
    names.map((n) =>
      stat(join(dir, n)).then(
        (s) => s.size,
        () => 0,
      ),
    ),
  );
  return { files: names.length, largest: Math.max(0, ...sizes), total: sizes.reduce((a, b) => a + b, 0) };
}

t.test('a guest writing 4x the cap keeps its serial log within the cap, newest output kept', async (t) => {
  const lab = await startComputeLab(t);
  const cap = await readSerialLogCap();
  if (!cap.bounded) throw new Error(`libvirt-up.sh left the serial log uncapped: ${cap.reason}`);
  t.equal(cap.totalBytes, 3 * 1024 * 1024, "libvirt-up.sh's cap: 1 MiB x (2 backups + 1)");
  const mib = Math.ceil((4 * cap.totalBytes) / (1024 * 1024));
  const lines = mib * LINES_PER_MIB;
  await lab.d.client.importImage({
    path: lab.guest.kernel,
    name: 'flood',
    initrd: lab.guest.initrd,
    cmdline: `${lab.guest.cmdline} berth.flood=${mib}`,
  });
  const started = Date.now();
  const rec = await lab.d.client.createInstance({
    name: 'loud',
    network: lab.network,
    runtime: 'libvirt',
    image: 'flood',
  });
  const dir = join(lab.d.stateDir, 'instances', rec.id);

  const worst: Sample = { files: 0, largest: 0, total: 0 };
  let samples = 0;
  let endedAt = 0;
  await waitFor(
    'the guest to finish its flood and power off',
    async () => {
      const s = await sample(dir);
      samples += 1;
      worst.files = Math.max(worst.files, s.files);
      worst.largest = Math.max(worst.largest, s.largest);
      worst.total = Math.max(worst.total, s.total);
      const log = await readFile(join(dir, 'serial.log'), 'utf8').catch(() => '');
      if (!endedAt && /BERTH-GUEST flood-end/.test(log)) endedAt = Date.now();
      return /BERTH-GUEST done/.test(log) && (await lab.d.client.instance('loud')).state === 'stopped';
    },
    240_000,
  );
  const seconds = (endedAt - started) / 1000;
  const written = lines * LINE_BYTES;
  t.comment(
    `flood: ${mib} MiB (${written} bytes on the console) in ${seconds.toFixed(1)} s from create, ` +
      `${(written / seconds / 1024).toFixed(0)} KiB/s; ${samples} samples; ` +
      `worst: ${worst.files} files, largest ${worst.largest} B, total ${worst.total} B (cap ${cap.totalBytes} B)`,
  );
  t.ok(written >= 4 * cap.totalBytes, `the guest wrote ${written} bytes, at least 4x the cap`);
  t.ok(samples > 50, `the files were sampled ${samples} times while it wrote`);
  t.ok(worst.largest <= cap.maxFileBytes, `no file was ever over max_size (largest ${worst.largest} B)`);
  t.ok(worst.files <= cap.backups + 1, `never more than ${cap.backups + 1} files (at most ${worst.files})`);
  t.ok(worst.total <= cap.totalBytes, `the total never exceeded the cap (at most ${worst.total} B)`);
  t.ok(
    worst.total > cap.totalBytes - cap.maxFileBytes,
    'and the cap was reached (rotation, not a short flood)',
  );

  const newest = await readFile(join(dir, 'serial.log'), 'utf8');
  t.match(
    newest,
    new RegExp(`BERTH-GUEST flood-end lines=${lines}`),
    'the newest output is kept: the end marker',
  );
  t.match(newest, /BERTH-GUEST done/, 'and the line after it');
  t.match(
    newest,
    new RegExp(`BERTH-FLOOD ${String(lines - 1).padStart(9, '0')} `),
    'and the last flood line',
  );
  // The files, oldest first, are the console stream's tail: every flood line in
  // them follows the one before, so nothing was lost where a file was rotated.
  const stream = (
    await Promise.all(
      [
        ...Array.from({ length: cap.backups }, (_, i) => `serial.log.${cap.backups - 1 - i}`),
        'serial.log',
      ].map((n) => readFile(join(dir, n), 'utf8').catch(() => '')),
    )
  ).join('');
  t.notMatch(stream, /BERTH-FLOOD 000000000 /, 'the oldest lines were rotated away');
  t.notMatch(stream, /BERTH-GUEST init /, 'as was the boot');
  const numbers = [...stream.matchAll(/BERTH-FLOOD (\d{9}) /g)].map((m) => Number(m[1]));
  const gaps = numbers.filter((n, i) => i > 0 && n !== (numbers[i - 1] as number) + 1).length;
  t.equal(gaps, 0, `the kept lines are contiguous (${numbers[0]} to ${numbers.at(-1)})`);
  t.equal(numbers.at(-1), lines - 1, 'up to the last one written');
  t.ok(stream.length > cap.totalBytes - cap.maxFileBytes, `${stream.length} bytes of the newest output kept`);

  await lab.d.client.deleteInstance('loud');
  t.equal((await sample(dir)).files, 0, 'delete removes every console file, rotated ones too');
});
