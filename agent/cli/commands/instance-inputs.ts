// `instance create`'s metadata flags: files are read here, on the operator's
// side, and sent to berthd inline (user-data and vendor-data as base64).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from 'commander';
import type { InstanceCreate, InstanceUpdate } from '../../api/types.js';
import { UsageError } from '../output.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function addMetadataOptions(cmd: Command): Command {
  return cmd
    .option('--user-data <file>', 'user-data served at /latest/user-data (cloud-config, script, ...)')
    .option('--vendor-data <file>', 'vendor-data (NoCloud vendor-data; OpenStack vendor_data.json)')
    .option('--ssh-key <file>', 'an OpenSSH public key file (repeatable)', collect)
    .option('--role <role>', 'the role policies can name as role:<role>')
    .option('--tokens <mode>', 'optional or required: whether metadata reads need an IMDSv2 token')
    .option(
      '--meta <key=value>',
      'free-form metadata (EC2 tags/instance, OpenStack meta) (repeatable)',
      collect,
    );
}

function read(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`${flag}: could not read "${file}": ${(err as Error).message}`);
  }
}

export function metadataInputs(flags: Record<string, unknown>): Partial<InstanceCreate> {
  const out: Partial<InstanceCreate> = {};
  if (flags.userData) out.user_data = read('--user-data', String(flags.userData)).toString('base64');
  if (flags.vendorData) out.vendor_data = read('--vendor-data', String(flags.vendorData)).toString('base64');
  const keys = (flags.sshKey as string[] | undefined) ?? [];
  if (keys.length > 0) {
    out.ssh_keys = keys.map((file) => {
      const line = read('--ssh-key', file).toString('utf8').trim().split('\n')[0] ?? '';
      // The key's comment names it, as ssh-keygen writes it; else the file name.
      const comment = line.split(/\s+/)[2];
      const name = (comment ?? basename(file).replace(/\.pub$/, ''))
        .replace(/[^A-Za-z0-9@._-]/g, '_')
        .slice(0, 64);
      return { name, key: line };
    });
  }
  if (flags.role) out.role = String(flags.role);
  if (flags.tokens !== undefined) {
    const mode = String(flags.tokens);
    if (mode !== 'optional' && mode !== 'required')
      throw new UsageError(`--tokens: "${mode}" is not one of optional, required`);
    out.tokens = mode;
  }
  const meta = (flags.meta as string[] | undefined) ?? [];
  if (meta.length > 0) {
    out.meta = {};
    for (const kv of meta) {
      const eq = kv.indexOf('=');
      if (eq < 1) throw new UsageError(`--meta: "${kv}" is not KEY=VALUE`);
      out.meta[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
  }
  return out;
}

/**
 * `instance update`'s metadata flags: the create flags set a value, and
 * `--no-user-data`, `--no-vendor-data`, `--no-ssh-keys`, `--no-role` and
 * `--unset-meta KEY` remove one. `--ssh-key` replaces the whole list.
 */
export function addMetadataUpdateOptions(cmd: Command): Command {
  return addMetadataOptions(cmd)
    .option('--no-user-data', 'remove the user-data')
    .option('--no-vendor-data', 'remove the vendor-data')
    .option('--no-ssh-keys', 'remove every SSH key')
    .option('--no-role', 'remove the role')
    .option('--unset-meta <key>', 'remove one meta key (repeatable)', collect);
}

/** The metadata part of a PATCH body; an empty object when no metadata flag was given. */
export function metadataPatch(flags: Record<string, unknown>): Partial<InstanceUpdate> {
  const out: Partial<InstanceUpdate> = { ...metadataInputs(flags) };
  // commander: --no-x sets x false; with --x <v> also defined, x is undefined when neither is given.
  if (flags.userData === false) out.user_data = null;
  if (flags.vendorData === false) out.vendor_data = null;
  if (flags.role === false) out.role = null;
  if (flags.sshKeys === false) {
    if (out.ssh_keys) throw new UsageError('--ssh-key and --no-ssh-keys: give one of them');
    out.ssh_keys = [];
  }
  for (const key of (flags.unsetMeta as string[] | undefined) ?? []) {
    if (out.meta && key in out.meta && out.meta[key] !== null)
      throw new UsageError(`--meta and --unset-meta: "${key}" is both set and removed`);
    out.meta = { ...out.meta, [key]: null };
  }
  return out;
}
