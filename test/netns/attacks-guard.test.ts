// Attack matrix (issue #8), guard rows: spoofed MAC, IP and ARP from netns
// guests against a real berthd, each refused at the guest's own port.
import t from 'tap';
import { garpForeignIp, ipSpoof, macSpoof } from '../attacks/guard.js';
import { guardTableDeleted } from '../attacks/guard-restore.js';
import { runAttacks } from '../attacks/harness.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

await runAttacks(t, [macSpoof, ipSpoof, garpForeignIp, guardTableDeleted]);
