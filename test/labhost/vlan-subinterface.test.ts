// vlan_mode subinterface on lab hosts: eth0.100 and eth0.200, each enslaved to
// its own VLAN's bridge. The scenario is in vlan-lab.ts.
import t from 'tap';
import { runVlanLab } from './vlan-lab.js';

t.setTimeout(900_000);
await t.test('vlan_mode subinterface', (t) =>
  runVlanLab(t, 'subinterface', { trunk: 'lhtrunk1', taps: ['lhtap2', 'lhtap3'], macByte: ['1a', '1b'] }),
);
