// Ends tracked flows with the `conntrack` CLI (Debian package conntrack):
// Neutron's answer to a source leaving a group, since a flow that conntrack
// still holds could otherwise keep its reply path. Entries are looked up by
// their original tuple, so each cut deletes both src→dst and dst→src, in the
// zone of the destination's bridge when known.
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

/** Runs every cut; resolves with the failures, each as text. */
export async function cutFlowsWith(
  runner: CommandRunner,
  cuts: readonly SgFlowCut[],
  zoneOfDst: (dst: string) => number | undefined,
): Promise<string[]> {
  const errors: string[] = [];
  for (const cut of cuts) {
    for (const argv of cutCommands(cut, zoneOfDst(cut.dst))) {
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
