// Attack matrix, the admin socket row: an outsider uid against the socket's
// mode, and hostile input checked in the domain XML libvirt really holds
// (real libvirtd and QEMU, scripts/libvirt-up.sh), with the audit of both.
import t from 'tap';
import { adminSocket } from '../attacks/admin.js';
import { runAttacks } from '../attacks/harness.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (setpriv to other uids, libvirtd, QEMU, bridges)');
  process.exit(0);
}
// Two TCG guests are defined and started on a busy 2-core machine.
t.setTimeout(300_000);

await runAttacks(t, [adminSocket]);
