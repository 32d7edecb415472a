import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { Image } from '../../api/types.js';
import { action, type CliContext } from '../context.js';
import { printJson, table } from '../output.js';

const MiB = 1024 * 1024;

function size(bytes: number): string {
  return bytes >= MiB ? `${(bytes / MiB).toFixed(1)} MiB` : `${bytes} B`;
}

/** A one-line bar on stderr, redrawn in place; only for people (a TTY) and files worth waiting for. */
export function progressBar(stream: NodeJS.WriteStream = process.stderr): {
  update(p: { done: number; total: number }): void;
  finish(): void;
} {
  let drawn = false;
  return {
    update({ done, total }) {
      if (!stream.isTTY || total < 16 * MiB) return;
      const width = 30;
      const frac = total > 0 ? done / total : 1;
      const full = Math.round(frac * width);
      stream.write(
        `\r[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${size(done)} / ${size(total)}`,
      );
      drawn = true;
    },
    finish() {
      if (drawn) stream.write('\n');
    },
  };
}

function describe(i: Image): string {
  return table(
    ['', ''],
    [
      ['name', i.name],
      ['sha256', i.sha256],
      ['kind', i.kind],
      ['format', i.format],
      ['size', size(i.bytes)],
      ['cmdline', i.cmdline],
      ['imported', i.created_at],
      ['from', i.source],
      ['used by', i.used_by?.join(', ') || undefined],
      ...i.parts.map((p) => [`part ${p.role}`, `${p.file} ${size(p.bytes)} sha256 ${p.sha256}`]),
    ],
  )
    .split('\n')
    .slice(1)
    .join('\n');
}

export function registerImages(program: Command, ctx: CliContext): void {
  const image = program.command('image').description('content-addressed guest images (SHA-256)');
  image
    .command('import <file>')
    .description(
      'copy a disk image (qcow2 or raw; --kernel to boot it without a bootloader), or a kernel with --initrd/--cmdline, into the store',
    )
    .option('--name <name>', 'image name (default: the file name without extension)')
    .option(
      '--kind <kind>',
      'disk or kernel (default: disk with --kernel or neither flag, kernel when --initrd or --cmdline is given)',
    )
    .option('--kernel <file>', 'a kernel that boots the disk image (with --initrd and --cmdline)')
    .option('--initrd <file>', 'initrd for the kernel')
    .option('--cmdline <text>', 'kernel command line')
    .action(
      action(ctx, async (flags, file: string) => {
        const path = resolve(file);
        const base = path.slice(path.lastIndexOf('/') + 1).replace(/\.[^.]*$/, '');
        const name = String(flags.name ?? base.toLowerCase().replace(/[^a-z0-9._-]/g, '-'));
        const bar = progressBar();
        const img = await ctx.client(flags).importImage(
          {
            path,
            name,
            ...(flags.kind ? { kind: String(flags.kind) as 'disk' | 'kernel' } : {}),
            ...(flags.kernel ? { kernel: resolve(String(flags.kernel)) } : {}),
            ...(flags.initrd ? { initrd: resolve(String(flags.initrd)) } : {}),
            ...(flags.cmdline !== undefined ? { cmdline: String(flags.cmdline) } : {}),
          },
          flags.json ? undefined : (p) => bar.update(p),
        );
        bar.finish();
        if (flags.json) return printJson(ctx.io, img);
        ctx.io.out(`image ${img.name} sha256 ${img.sha256} (${img.kind}, ${size(img.bytes)})`);
      }),
    );
  image
    .command('list')
    .description('list images')
    .action(
      action(ctx, async (flags) => {
        const { images } = await ctx.client(flags).images();
        if (flags.json) return printJson(ctx.io, images);
        ctx.io.out(
          table(
            ['NAME', 'KIND', 'SIZE', 'SHA256', 'USED BY'],
            images.map((i) => [
              i.name,
              i.kind,
              size(i.bytes),
              i.sha256,
              i.used_by?.length ? i.used_by.join(',') : undefined,
            ]),
          ),
        );
      }),
    );
  image
    .command('show <name>')
    .description('show one image (by name or sha256)')
    .action(
      action(ctx, async (flags, name: string) => {
        const i = await ctx.client(flags).image(name);
        if (flags.json) return printJson(ctx.io, i);
        ctx.io.out(describe(i));
      }),
    );
  image
    .command('delete <name>')
    .description('delete an image; refused while an instance uses it')
    .action(
      action(ctx, async (flags, name: string) => {
        await ctx.client(flags).deleteImage(name);
        if (flags.json) return printJson(ctx.io, { deleted: name });
        ctx.io.out(`image ${name} deleted`);
      }),
    );
}
