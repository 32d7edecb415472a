// Finds the data path this kernel offers for security groups, by trying it:
// a rule with `ct state` in a bridge-family table is refused with EPROTO when
// nf_conntrack_bridge is missing, so a probe table is added and deleted in one
// transaction (it never exists outside it; a refused one leaves nothing).
// Without it, br_netfilter (built in or as a module) hands bridged IPv4 to the
// inet hooks, where conntrack runs, once bridge-nf-call-iptables is 1 in
// berthd's network namespace. That sysctl is global to the namespace: every
// bridge's IPv4 then also meets the host's inet/iptables forward rules
// (Neutron's iptables_hybrid driver has the same precondition).
import { readFile, writeFile } from 'node:fs/promises';
import { type CommandRunner, osCommandRunner } from '../../base/command.js';
import { BerthError, causeText } from '../../base/errors.js';
import type { SgMode } from './state.js';

export const BRIDGE_NF_CALL_IPTABLES = '/proc/sys/net/bridge/bridge-nf-call-iptables';

/** The kernel seam detection needs: nft transactions, modprobe, one sysctl. */
export interface SgKernel {
  nft(script: string): Promise<void>;
  /** Best effort: a built-in or missing module is not an error here. */
  modprobe(module: string): Promise<void>;
  /** The sysctl's value, or undefined when the file does not exist. */
  readSysctl(path: string): Promise<string | undefined>;
  writeSysctl(path: string, value: string): Promise<void>;
}

export function osSgKernel(runner: CommandRunner = osCommandRunner): SgKernel {
  return {
    async nft(script) {
      await runner.run(['nft', '-f', '-'], { input: script });
    },
    async modprobe(module) {
      await runner.run(['modprobe', '-q', module]).catch(() => undefined);
    },
    async readSysctl(path) {
      return readFile(path, 'utf8').then(
        (v) => v.trim(),
        () => undefined,
      );
    },
    writeSysctl: (path, value) => writeFile(path, `${value}\n`),
  };
}

/**
 * A throwaway table with what the mode's skeleton needs from the kernel.
 * bridge-ct also needs `ct zone set` in bridge prerouting and `meta ibrname`
 * (nft_meta_bridge), and the per-VLAN zone maps `meta ibrname . vlan id` and
 * `meta ibrname . meta ibrpvid`: a kernel with nf_conntrack_bridge but
 * without those would refuse the real tables, and a refused write enforces nothing.
 */
function probe(family: string, table: string): string {
  const t = `${family} ${table}`;
  const zones =
    family === 'bridge'
      ? [
          `add map ${t} z { typeof meta ibrname : ct zone; }`,
          `add chain ${t} raw { type filter hook prerouting priority -300; policy accept; }`,
          `add map ${t} tz { typeof meta ibrname . vlan id : ct zone; }`,
          `add map ${t} pz { typeof meta ibrname . meta ibrpvid : ct zone; }`,
          `add rule ${t} raw ct zone set meta ibrname map @z`,
          `add rule ${t} raw ether type 8021q ct zone set meta ibrname . vlan id map @tz`,
          `add rule ${t} raw ether type != 8021q ct zone set meta ibrname . meta ibrpvid map @pz`,
        ]
      : [
          `add map ${t} z { typeof iifname : ct zone; }`,
          `add chain ${t} raw { type filter hook prerouting priority -300; policy accept; }`,
          `add rule ${t} raw ct zone set iifname map @z`,
        ];
  return [
    `add table ${t}`,
    ...zones,
    `add chain ${t} c`,
    `add rule ${t} c ct state established ct direction reply accept`,
    `delete table ${t}`,
    '',
  ].join('\n');
}

export interface Detected {
  mode: SgMode;
  /** What detection changed on the host, for berthd's log. */
  notes: string[];
}

export async function detectSgMode(kernel: SgKernel, prefix: string): Promise<Detected> {
  const table = `${prefix}_sgprobe`;
  const tries = async (family: string) =>
    kernel.nft(probe(family, table)).then(
      () => undefined,
      (err: unknown) => causeText(err),
    );
  await kernel.modprobe('nf_conntrack_bridge');
  await kernel.modprobe('nft_meta_bridge');
  const bridgeCt = await tries('bridge');
  if (bridgeCt === undefined) return { mode: 'bridge-ct', notes: [] };

  const why = `nf_conntrack_bridge with nft_meta_bridge (ct and ct zone in the bridge family: ${bridgeCt.split('\n')[0]})`;
  const missing = [why];
  if ((await kernel.readSysctl(BRIDGE_NF_CALL_IPTABLES)) === undefined) await kernel.modprobe('br_netfilter');
  const current = await kernel.readSysctl(BRIDGE_NF_CALL_IPTABLES);
  const inetCt = await tries('inet');
  if (current === undefined) missing.push(`br_netfilter (${BRIDGE_NF_CALL_IPTABLES} is absent)`);
  if (inetCt !== undefined) missing.push(`nf_conntrack (ct in the inet family: ${inetCt.split('\n')[0]})`);
  if (current === undefined || inetCt !== undefined)
    throw new BerthError(
      'BERTH_ERR_HOST_OP',
      `could not enforce security groups "${prefix}_sg": this kernel lacks ${missing.join(' and ')}`,
    );
  const notes = [`bridge-ct unavailable, using br-netfilter: this kernel lacks ${why}`];
  if (current !== '1') {
    await kernel.writeSysctl(BRIDGE_NF_CALL_IPTABLES, '1');
    notes.push(`set ${BRIDGE_NF_CALL_IPTABLES} to 1 (was ${current}): bridged IPv4 now meets conntrack`);
  }
  return { mode: 'br-netfilter', notes };
}
