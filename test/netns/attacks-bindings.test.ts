// Attack matrix (issue 12), rows about the kernel bindings identity is decided
// from, run from a FOREIGN veth plugged into a berth bridge by hand (no guard
// rule applies to it): ARP lies about a guest, a guest's MAC as frame source,
// and DHCP DECLINE/RELEASE forged in a guest's name.
import t from 'tap';
import { runAttacks } from '../attacks/harness.js';
import { guestMacFromForeignPort } from '../attacks/identity.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

await runAttacks(t, [guestMacFromForeignPort]);
