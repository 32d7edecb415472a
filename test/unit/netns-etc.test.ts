// Each namespace's own /etc/netns/NAME/resolv.conf: made once and kept (a
// guest's lease lands there), removed with the namespace, and not made at all
// on a host without /etc/resolv.conf, where iproute2 would have nothing to
// bind it over.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { NetnsEtc } from '../../hostnet/links/netns-etc.js';

const dirs: string[] = [];
const scratch = () => {
  const d = mkdtempSync(join(tmpdir(), 'berth-netns-etc-test-'));
  dirs.push(d);
  return d;
};
t.teardown(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

t.test('made once, kept, removed', async (t) => {
  const host = join(scratch(), 'resolv.conf');
  writeFileSync(host, 'nameserver 192.0.2.53\n');
  const etc = new NetnsEtc(scratch(), host);
  await etc.ensure('ne-g-a');
  const file = join(etc.root, 'ne-g-a', 'resolv.conf');
  t.match(readFileSync(file, 'utf8'), /own resolver file/);
  writeFileSync(file, 'nameserver 10.0.0.53\n'); // the guest's DHCP client wrote its lease
  await etc.ensure('ne-g-a');
  t.equal(readFileSync(file, 'utf8'), 'nameserver 10.0.0.53\n', 'a second ensure keeps what the guest wrote');
  await etc.remove('ne-g-a');
  t.notOk(existsSync(join(etc.root, 'ne-g-a')));
  await etc.remove('ne-g-a');
  t.pass('removing again is fine');
});

t.test('nothing on a host without /etc/resolv.conf', async (t) => {
  const etc = new NetnsEtc(scratch(), join(scratch(), 'no-such-resolv.conf'));
  await etc.ensure('ne-g-b');
  t.notOk(existsSync(join(etc.root, 'ne-g-b')));
});

t.test('a name that would leave the folder is refused', async (t) => {
  const etc = new NetnsEtc(scratch());
  for (const bad of ['..', '.', 'a/b', '../etc', ''])
    await t.rejects(etc.ensure(bad), /bad network namespace name/, JSON.stringify(bad));
});
