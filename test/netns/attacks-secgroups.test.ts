// Attack matrix, security-group rows: a borrowed role source and a
// connection that would outlive its rule, against a real berthd.
import t from 'tap';
import { runAttacks } from '../attacks/harness.js';
import { connectionOutlivesRule, spoofedRoleSource } from '../attacks/secgroups.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces, nftables and conntrack)');
  process.exit(0);
}

await runAttacks(t, [spoofedRoleSource, connectionOutlivesRule]);
