// Ends tracked flows with the `conntrack` CLI (Debian package conntrack):
// Neutron's answer to a source leaving a group, since a flow that conntrack
// still holds could otherwise keep its reply path. Entries are looked up by
// their original tuple, so each cut deletes both src→dst and dst→src, in the
// zone of each bridge where the destination is a guarded port: tenant subnets
// may overlap, so one address can be a guarded port on several bridges, and a
// cut in only one of their zones would leave the others' flows tracked.
import { CommandError, type CommandRunner } from '../../base/command.js';
import type { SgFlowCut } from './state.js';

export function cutCommands(cut: SgFlowCut, zone: number | undefined): string[][] {
  const z = zone === undefined ? [] : ['-w', String(zone)];
  return [
    ['conntrack', '-D', '-f', 'ipv4', '-s', cut.src, '-d', cut.dst, ...z],
    ['conntrack', '-D', '-f', 'ipv4', '-s', cut.dst, '-d', cut.src, ...z],
  ];
}

/** conntrack exits 1 when it deleted nothing; that is a cut already done. */
export function nothingToDelete(err: unknown): boolean {
  return err instanceof CommandError && /0 flow entries have been deleted/.test(err.stderr);
}

/** Runs every cut; resolves with the failures, each as text. No zone known for a destination: every zone. */
export async function cutFlowsWith(
  runner: CommandRunner,
  cuts: readonly SgFlowCut[],
  zonesOfDst: (dst: string) => readonly number[],
): Promise<string[]> {
  const errors: string[] = [];
  for (const cut of cuts) {
    const zones = zonesOfDst(cut.dst);
    const argvs = zones.length > 0 ? zones.flatMap((z) => cutCommands(cut, z)) : cutCommands(cut, undefined);
    for (const argv of argvs) {
      try {
        await runner.run(argv);
      } catch (err) {
        if (!nothingToDelete(err))
          errors.push(`${cut.src} -> ${cut.dst}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
  return errors;
}
