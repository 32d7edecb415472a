// The parts of the command tree whose features have not landed yet. Each
// answers "not implemented yet" with exit code 3 until its issue fills it in.
import type { Command } from 'commander';
import { action, type CliContext } from '../context.js';
import { NotImplementedError } from '../output.js';

const PENDING: Record<string, { about: string; verbs: Record<string, string> }> = {
  network: {
    about: 'bridges, VLANs and the per-network endpoint',
    verbs: {
      create: 'create a network',
      list: 'list networks',
      show: 'show one network',
      delete: 'delete a network',
    },
  },
  image: {
    about: 'content-addressed guest images',
    verbs: {
      import: 'import an image file',
      list: 'list images',
      show: 'show one image',
      delete: 'delete an image',
    },
  },
  instance: {
    about: 'guests (libvirt or netns runtime)',
    verbs: {
      create: 'create and start an instance',
      list: 'list instances',
      show: 'show one instance',
      start: 'start an instance',
      stop: 'stop an instance',
      reboot: 'reboot an instance',
      delete: 'delete an instance',
      exec: 'run a command in a netns instance',
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
  pool: { about: 'the MAC pool', verbs: { show: 'show pool usage' } },
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
