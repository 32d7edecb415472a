// Attack matrix (issue #8), host and lifecycle rows: a freed IP in
// quarantine, overlapping subnets, and guests trying to reach the host.
import t from 'tap';
import { runAttacks } from '../attacks/harness.js';
import { hostServices } from '../attacks/host.js';
import { ipReusedAfterDelete, overlappingSubnets } from '../attacks/lifecycle.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

await runAttacks(t, [ipReusedAfterDelete, overlappingSubnets, hostServices]);
