// virt type detection over a fake probe, plus the real host's answer.
import t from 'tap';
import { detectVirtType, hostVirtProbe, type VirtProbe } from '../../agent/compute/virt-type.js';

const probe = (dev: boolean, flags: string[], modules: string[]): VirtProbe => ({
  kvmDevice: async () => dev,
  cpuFlags: async () => new Set(flags),
  moduleLoaded: async (m) => modules.includes(m),
});

t.test('auto', async (t) => {
  t.equal((await detectVirtType('auto', probe(true, ['vmx'], ['kvm', 'kvm_intel']))).type, 'kvm');
  t.equal((await detectVirtType('auto', probe(true, ['svm'], ['kvm', 'kvm_amd']))).type, 'kvm');
  const pvm = await detectVirtType('auto', probe(true, ['hypervisor'], ['kvm', 'kvm_pvm']));
  t.equal(pvm.type, 'qemu', '/dev/kvm from kvm_pvm is not enough');
  t.match(pvm.reason, /kvm_pvm/);
  t.equal((await detectVirtType('auto', probe(false, ['vmx'], ['kvm_intel']))).type, 'qemu', 'no /dev/kvm');
  const unloaded = await detectVirtType('auto', probe(true, ['vmx'], ['kvm']));
  t.equal(unloaded.type, 'qemu');
  t.match(unloaded.reason, /kvm_intel is not loaded/);
});

t.test('the config wins', async (t) => {
  t.equal((await detectVirtType('kvm', probe(false, [], []))).type, 'kvm');
  t.equal((await detectVirtType('qemu', probe(true, ['vmx'], ['kvm_intel']))).type, 'qemu');
});

t.test('this host', async (t) => {
  const real = await detectVirtType('auto', hostVirtProbe);
  t.comment(`${real.type}: ${real.reason}`);
  t.ok(real.type === 'kvm' || real.type === 'qemu');
  t.ok(real.reason.length > 0);
});
