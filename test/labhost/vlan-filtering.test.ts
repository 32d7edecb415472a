// vlan_mode filtering on lab hosts: one VLAN-filtering bridge per uplink, a
// guest port's pvid picks its VLAN, eth0 carries 100 and 200 tagged.
// The scenario is in vlan-lab.ts.
import t from 'tap';
import { runVlanLab } from './vlan-lab.js';

t.setTimeout(900_000);
await t.test('vlan_mode filtering', (t) =>
  runVlanLab(t, 'filtering', { trunk: 'lhtrunk0', taps: ['lhtap0', 'lhtap1'], macByte: ['0a', '0b'] }),
);
