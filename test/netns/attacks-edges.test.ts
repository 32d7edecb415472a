// Attack matrix (issue 12), edge rows: a foreign namespace plugged into a
// network's bridge by hand attacks the endpoint and the guests with scapy, a
// rogue HTTP server and a rogue DHCP server, against a real berthd.
import t from 'tap';
import { EDGE_ROWS } from '../attacks/edges.js';
import { runAttacks } from '../attacks/harness.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

await runAttacks(t, EDGE_ROWS);
