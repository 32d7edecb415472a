// Attack matrix (issue #8), DHCP rows: a foreign chaddr and a starvation
// flood from netns guests against a real berthd.
import t from 'tap';
import { dhcpForeignChaddr, dhcpStarvation } from '../attacks/dhcp.js';
import { runAttacks } from '../attacks/harness.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

await runAttacks(t, [dhcpForeignChaddr, dhcpStarvation]);
