// The parts of the command tree whose features have not landed yet. Each
// answers "not implemented yet" with exit code 3 until its issue fills it in.
import type { Command } from 'commander';
import { action, type CliContext } from '../context.js';
import { NotImplementedError } from '../output.js';

const PENDING: Record<string, { about: string; verbs: Record<string, string> }> = {
  image: {
    about: 'content-addressed guest images',
    verbs: {
      import: 'import an image file',
      list: 'list images',
      show: 'show one image',
      delete: 'delete an image',
    },
  },
  policy: {
    about: 'identity permissions for the metadata service',
    verbs: {
      list: 'list policies',
      show: 'show one policy',
      set: 'create or replace a policy',
      delete: 'delete a policy',
    },
  },
  lease: { about: 'DHCP leases', verbs: { list: 'list leases' } },
};

export function registerPending(program: Command, ctx: CliContext): void {
  for (const [noun, { about, verbs }] of Object.entries(PENDING)) {
    const group = program.command(noun).description(about);
    for (const [verb, description] of Object.entries(verbs)) {
      group
        .command(verb)
        .description(`${description} (not implemented yet)`)
        .allowUnknownOption()
        .allowExcessArguments()
        .argument('[args...]')
        .action(
          action(ctx, async () => {
            throw new NotImplementedError(`berthctl ${noun} ${verb}`);
          }),
        );
    }
  }
}
