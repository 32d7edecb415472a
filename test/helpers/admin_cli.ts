// berthctl against an in-process admin API on a temporary unix socket: the
// real services on a memory store, fake host drivers (these tests are about
// the CLI, the API and the audit log, not the host), and a runner that
// captures what berthctl prints. Shared by the *-cli unit tests.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Test } from 'tap';
import { type AdminServices, buildAdminServer } from '../../agent/api/server.js';
import { AuditLog } from '../../agent/audit/audit-log.js';
import { runCli } from '../../agent/cli/program.js';
import { EMBEDDED_DEFAULT } from '../../agent/config/schema.js';
import { buildServices, type Services } from '../../agent/daemon/services.js';
import { MemoryStore } from '../../agent/store/memory-store.js';
import type { SecGroupDriver } from '../../hostnet/secgroups/driver.js';
import { FakeDriver } from '../fakes/fake-driver.js';
import { FakeObserver } from '../fakes/fake-observer.js';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

export interface AdminCliLab {
  dir: string;
  store: MemoryStore;
  services: Services;
  audit: AuditLog;
  socket: string;
  log: pino.Logger;
  /** Runs berthctl with these arguments against the lab's socket. */
  cli(...args: string[]): Promise<CliResult>;
}

/** berthctl's exit code and output for `args` against `socket`. */
export async function runBerthctl(socket: string, args: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(
    ['--socket', socket, ...args],
    { out: (s) => out.push(s), err: (s) => err.push(s) },
    'test',
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

export async function startAdminCli(
  t: Test,
  opts: {
    /** berth's name prefix for this lab (2-4 characters). */
    prefix: string;
    sgDriver?: SecGroupDriver;
    /** More admin services (policies, notices, peers...), once the services and audit log exist. */
    extra?: (
      lab: Omit<AdminCliLab, 'socket' | 'cli'>,
    ) => Promise<Partial<AdminServices>> | Partial<AdminServices>;
  },
): Promise<AdminCliLab> {
  const dir = await mkdtemp(join(tmpdir(), `berth-${opts.prefix}-cli-`));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  const log = pino({ level: 'silent' });
  const sg = opts.sgDriver;
  const services = await buildServices(
    store,
    { ...EMBEDDED_DEFAULT, networks: [], name_prefix: opts.prefix, state_dir: dir },
    log,
    () => new FakeDriver(),
    () => new FakeObserver(),
    undefined,
    sg ? () => sg : undefined,
  );
  t.teardown(() => services.secgroupEnforcer.stop());
  const audit = await AuditLog.open(store);
  const extra = (await opts.extra?.({ dir, store, services, audit, log })) ?? {};
  const api = await buildAdminServer(
    {
      status: { status: async () => ({}) as never },
      audit,
      ...services,
      secgroupUsage: (group) => services.secgroupEnforcer.usage(group),
      ...extra,
    },
    log,
  );
  const socket = join(dir, 'api.sock');
  await api.listen({ path: socket });
  t.teardown(() => api.close());
  return { dir, store, services, audit, socket, log, cli: (...args) => runBerthctl(socket, args) };
}
