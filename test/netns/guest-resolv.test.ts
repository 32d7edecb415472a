// A DHCP client's own script inside a netns guest writes the guest's resolver
// file, never the hypervisor's. busybox's default udhcpc script writes
// /etc/resolv.conf from the lease; before each berth namespace had its own
// /etc/netns/NAME/resolv.conf, that was the host's file, and a lease without
// DNS left the host with no resolver at all.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { NETNS_ETC_ROOT } from '../../hostnet/links/netns-etc.js';
import { removePrefixed, startBerthd, uniquePrefix } from '../helpers/berthd.js';

async function hostResolv(): Promise<{ text: string; mtimeMs: number }> {
  const [text, s] = await Promise.all([readFile('/etc/resolv.conf', 'utf8'), stat('/etc/resolv.conf')]);
  return { text, mtimeMs: s.mtimeMs };
}

t.test("a guest's DHCP script writes the guest's resolv.conf, not the host's", async (t) => {
  const prefix = uniquePrefix();
  t.teardown(() => removePrefixed(prefix));
  const d = await startBerthd(t, {
    prefix,
    config:
      'networks:\n  - name: ors\n    subnet: 10.251.14.0/24\n    dns: [10.251.14.53]\n    domain: ors.test\n',
  });
  const inst = await d.client.createInstance({ name: 'ors1', network: 'ors', runtime: 'netns' });
  const before = await hostResolv();

  // No -s: busybox's default script, as a guest image would run it.
  const r = await d.client.exec('ors1', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '5']);
  t.equal(r.code, 0, `udhcpc got a lease: ${r.stderr}`);
  const inGuest = await d.client.exec('ors1', ['cat', '/etc/resolv.conf']);
  t.match(inGuest.stdout, /nameserver 10\.251\.14\.53/, 'the guest sees the lease it got');
  t.match(inGuest.stdout, /domain ors\.test/);

  const after = await hostResolv();
  t.equal(after.text, before.text, "the host's resolver file is unchanged");
  t.equal(after.mtimeMs, before.mtimeMs, 'and was not rewritten');

  const netns = inst.netns ?? '';
  t.ok(netns.startsWith(prefix), 'the instance names its namespace');
  const own = join(NETNS_ETC_ROOT, netns, 'resolv.conf');
  t.match(await readFile(own, 'utf8'), /nameserver 10\.251\.14\.53/, 'the lease landed in its own file');

  await d.client.deleteInstance('ors1');
  await t.rejects(stat(join(NETNS_ETC_ROOT, netns)), { code: 'ENOENT' }, 'deleted with the guest');
});
