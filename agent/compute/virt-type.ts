// Chooses <domain type='kvm'> or 'qemu' (TCG). Only hardware virtualisation
// counts as KVM: on these build machines /dev/kvm exists, but it is kvm_pvm,
// which runs only PVM guests. Measured: QEMU with -accel kvm starts there, and
// even runs a real-mode probe to completion, yet Debian's kernel hangs without
// a byte of output. So a probe that merely opens /dev/kvm or runs a few
// instructions says nothing; what counts is vmx/svm in the CPU flags plus
// kvm_intel or kvm_amd loaded. A config override (`kvm` | `qemu`) wins.
import { access, constants, readFile } from 'node:fs/promises';
import type { VirtType } from './domain-xml.js';

export type VirtTypeSetting = 'auto' | VirtType;

export interface VirtProbe {
  /** /dev/kvm opens for read and write. */
  kvmDevice(): Promise<boolean>;
  cpuFlags(): Promise<Set<string>>;
  /** Names under /sys/module. */
  moduleLoaded(name: string): Promise<boolean>;
}

export const hostVirtProbe: VirtProbe = {
  async kvmDevice() {
    try {
      await access('/dev/kvm', constants.R_OK | constants.W_OK);
      return true;
    } catch {
      return false;
    }
  },
  async cpuFlags() {
    const text = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
    const line = text.split('\n').find((l) => l.startsWith('flags')) ?? '';
    return new Set(
      line
        .slice(line.indexOf(':') + 1)
        .trim()
        .split(/\s+/),
    );
  },
  async moduleLoaded(name) {
    try {
      await access(`/sys/module/${name}`);
      return true;
    } catch {
      return false;
    }
  },
};

export interface VirtTypeChoice {
  type: VirtType;
  /** Why, for the log and `berthctl status`. */
  reason: string;
}

export async function detectVirtType(
  setting: VirtTypeSetting = 'auto',
  probe: VirtProbe = hostVirtProbe,
): Promise<VirtTypeChoice> {
  if (setting !== 'auto') return { type: setting, reason: `configured virt_type ${setting}` };
  if (!(await probe.kvmDevice())) return { type: 'qemu', reason: '/dev/kvm is missing or not accessible' };
  const flags = await probe.cpuFlags();
  const hw = flags.has('vmx') ? 'kvm_intel' : flags.has('svm') ? 'kvm_amd' : undefined;
  if (!hw) {
    const pvm = (await probe.moduleLoaded('kvm_pvm')) ? ' (kvm_pvm runs only PVM guests)' : '';
    return { type: 'qemu', reason: `the CPU has neither vmx nor svm${pvm}` };
  }
  if (!(await probe.moduleLoaded(hw))) return { type: 'qemu', reason: `${hw} is not loaded` };
  return { type: 'kvm', reason: `${hw} with ${hw === 'kvm_intel' ? 'vmx' : 'svm'}` };
}
