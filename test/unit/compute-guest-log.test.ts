// The test guest's serial markers, parsed from logs shaped like the real ones.
import t from 'tap';
import { uuidOfPath } from '../../agent/compute/libvirt-dbus.js';
import { parseGuestLog } from '../../images/test-guest.js';

const full = [
  '[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP',
  'BERTH-GUEST init uptime=2.61 kernel=6.1.0-56-amd64',
  'BERTH-GUEST mac=0a:b7:e7:00:00:01',
  'udhcpc: started, v1.35.0',
  'BERTH-GUEST lease=10.77.0.2 uptime=3.30',
  'BERTH-GUEST route169=staticroutes',
  'BERTH-GUEST instance-id=i-deadbeef uptime=3.35',
  'BERTH-GUEST user-data-begin',
  '#cloud-config',
  'hostname: web1',
  '',
  'BERTH-GUEST user-data-end',
  'BERTH-GUEST done uptime=3.40',
  '[    3.41] reboot: Power down',
  '',
].join('\r\n');

t.test('a guest that got everything', async (t) => {
  const r = parseGuestLog(full);
  t.same(r, {
    kernelBooted: true,
    initRan: true,
    done: true,
    mac: '0a:b7:e7:00:00:01',
    lease: '10.77.0.2',
    route169: 'staticroutes',
    instanceId: 'i-deadbeef',
    userData: '#cloud-config\nhostname: web1',
    uptime: { init: 2.61, lease: 3.3, done: 3.4 },
  });
});

t.test('no lease, no metadata; a log cut short', async (t) => {
  const r = parseGuestLog(
    'Linux version 6.1\nBERTH-GUEST init uptime=3.6 kernel=x\nBERTH-GUEST lease=none uptime=10.49\nBERTH-GUEST done uptime=10.5\n',
  );
  t.equal(r.lease, 'none');
  t.equal(r.instanceId, undefined);
  t.ok(r.done);
  const errs = parseGuestLog('BERTH-GUEST instance-id-error=403\nBERTH-GUEST user-data-error=no-answer\n');
  t.equal(errs.instanceIdError, '403');
  t.equal(errs.userDataError, 'no-answer');
  const cut = parseGuestLog('BERTH-GUEST init uptime=1\nBERTH-GUEST user-data-begin\npartial');
  t.ok(cut.initRan);
  t.notOk(cut.done);
  t.equal(cut.userData, undefined, 'no end marker: no user-data claimed');
  t.notOk(parseGuestLog('').kernelBooted);
  // Read while virtlogd was still writing the line (seen in CI: "i-cfb5b1" for "i-cfb5b16e").
  const midLine = parseGuestLog('BERTH-GUEST init uptime=1\nBERTH-GUEST instance-id=i-cfb5b1');
  t.equal(midLine.instanceId, undefined, 'a line without its newline is not read yet');
  t.equal(parseGuestLog('BERTH-GUEST instance-id=i-cfb5b16e uptime=4.2\n').instanceId, 'i-cfb5b16e');
});

t.test('a guest booted from a disk says its root device and boot count', async (t) => {
  const r = parseGuestLog(
    'BERTH-GUEST init uptime=5.2 kernel=x\nBERTH-GUEST disk=/dev/vda1 boots=2\nBERTH-GUEST done uptime=7.9\n',
  );
  t.same(r.disk, { root: '/dev/vda1', boots: 2 });
  t.equal(parseGuestLog(full).disk, undefined, 'an initramfs guest has no disk line');
});

t.test('libvirt-dbus object paths name the domain uuid', async (t) => {
  t.equal(
    uuidOfPath('/org/libvirt/QEMU/domain/_ce7a4c29_c5a4_4050_9b75_982937687e94'),
    'ce7a4c29-c5a4-4050-9b75-982937687e94',
  );
});
