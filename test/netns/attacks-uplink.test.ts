// Attack rows for a flat provider network's uplink: the far side of a real
// uplink veth attacks the endpoint and the guests, against a real berthd;
// legitimate traffic across the uplink is the control.
import t from 'tap';
import { runAttacks } from '../attacks/harness.js';
import { UPLINK_ROWS } from '../attacks/uplink.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

await runAttacks(t, UPLINK_ROWS);
