// `identity verify FILE`: is this identity document signed by a host of the
// cluster? berthd holds the keys; the CLI reads the file and says.
// `identity jwks`: the key set that verifies documents and identity tokens.
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { action, type CliContext } from '../context.js';
import { EXIT, printJson, UsageError } from '../output.js';

/**
 * What FILE holds: a bundle `{"document": "...", "signature": "..."}`, or the
 * raw document when the signature comes in its own file. A raw document is
 * taken byte for byte: the signature covers exactly those bytes.
 */
export function parseVerifyInput(
  file: string,
  signatureFile?: string,
): { document: string; signature: string } | { error: string } {
  if (signatureFile !== undefined) {
    const signature = signatureFile.trim();
    if (signature === '') return { error: 'the signature file is empty' };
    return { document: file, signature };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(file);
  } catch {
    return { error: 'the file is not JSON; give a bundle {"document", "signature"} or --signature-file' };
  }
  const b = (parsed ?? {}) as { document?: unknown; signature?: unknown };
  if (typeof b.document === 'string' && typeof b.signature === 'string')
    return { document: b.document, signature: b.signature };
  if (typeof parsed === 'object' && 'hostId' in b)
    return { error: 'the file is a bare identity document; give its signature with --signature-file' };
  return { error: 'the file is not a bundle: it needs string fields "document" and "signature"' };
}

export function registerIdentity(program: Command, ctx: CliContext): void {
  const identity = program.command('identity').description('instance identity documents');
  identity
    .command('verify <file>')
    .description(
      'check an identity document against the keys of live, lost and recently forgotten hosts; exit 1 if it does not verify',
    )
    .option('--signature-file <f>', 'FILE is the raw document; its base64 signature is in this file')
    .action(
      action(ctx, async (flags, file: string) => {
        const read = (f: string) =>
          readFile(f, 'utf8').catch((err: NodeJS.ErrnoException) => {
            throw new UsageError(`could not read "${f}": ${err.code ?? err.message}`);
          });
        const sigFile = flags.signatureFile === undefined ? undefined : String(flags.signatureFile);
        const input = parseVerifyInput(await read(file), sigFile ? await read(sigFile) : undefined);
        if ('error' in input) throw new UsageError(`${file}: ${input.error}`);
        const r = await ctx.client(flags).verifyIdentity(input.document, input.signature);
        if (flags.json) printJson(ctx.io, r);
        else if (r.valid)
          ctx.io.out(
            `valid: instance ${r.instance_id ?? '?'} signed by host ${r.host} (${r.host_state}, key ${r.fingerprint?.slice(0, 16)}…)`,
          );
        else ctx.io.err(`berthctl: not valid: ${r.reason}`);
        if (!r.valid) ctx.exitCode = EXIT.refused;
      }),
    );
  identity
    .command('jwks')
    .description(
      'the key set (JWKS) that verifies identity documents and tokens, as guests read it at /latest/dynamic/berth/jwks.json',
    )
    .action(
      action(ctx, async (flags) => {
        const set = await ctx.client(flags).metadataJwks();
        if (flags.json) printJson(ctx.io, set);
        else for (const k of set.keys) ctx.io.out(`${k.kid}\t${k.alg} ${k.crv}\t${k.x}`);
      }),
    );
}
