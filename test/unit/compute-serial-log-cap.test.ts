// The serial log cap read back from virtlogd.conf and qemu.conf: libvirt's
// defaults, berth's explicit values, and the two ways to have no cap at all.
import t from 'tap';
import { confValue, readSerialLogCap, serialLogCap } from '../../agent/compute/serial-log-cap.js';

const STOCK = '# max_size = 2097152\n#max_backups = 3\n';

t.test("stock files: virtlogd's defaults, 2 MiB x 4", async (t) => {
  t.same(serialLogCap(STOCK, '#stdio_handler = "logd"\n'), {
    bounded: true,
    maxFileBytes: 2097152,
    backups: 3,
    totalBytes: 8388608,
  });
});

t.test("berth's values, as scripts/libvirt-up.sh writes them (last one wins)", async (t) => {
  const v = `${STOCK}max_size = 4096\nmax_backups = 9\nmax_size = 1048576 # berth\nmax_backups = 2\n`;
  t.equal(confValue(v, 'max_size'), '1048576');
  t.same(serialLogCap(v, 'user = "root"\nstdio_handler = "logd"\n'), {
    bounded: true,
    maxFileBytes: 1048576,
    backups: 2,
    totalBytes: 3145728,
  });
});

t.test('no cap: QEMU writes the file itself, rotation off, or nonsense', async (t) => {
  t.match(serialLogCap(STOCK, 'stdio_handler = "file"\n'), {
    bounded: false,
    reason: /stdio_handler = "file"/,
  });
  t.match(serialLogCap('max_size = 0\n', ''), { bounded: false, reason: /max_size = 0/ });
  t.match(serialLogCap('max_size = "big"\n', ''), { bounded: false, reason: /not a number/ });
});

t.test('unreadable files count as empty (the defaults)', async (t) => {
  const cap = await readSerialLogCap({ virtlogd: '/nonexistent/v', qemu: '/nonexistent/q' });
  t.match(cap, { bounded: true, totalBytes: 8388608 });
});
