// How berthctl speaks: JSON when asked, aligned tables for people, and one
// exit code per kind of outcome.
import { ClientError } from '../client/client.js';

export const EXIT = { ok: 0, refused: 1, usage: 2, unavailable: 3 } as const;

export class UsageError extends Error {}

/** Thrown by commands whose feature has not landed yet. */
export class NotImplementedError extends Error {
  constructor(what: string) {
    super(`${what}: not implemented yet`);
  }
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
};

export function printJson(io: Io, value: unknown): void {
  io.out(JSON.stringify(value, null, 2));
}

export function table(headers: string[], rows: (string | number | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === undefined ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : (c ?? '').padEnd(widths[i] ?? 0))).join('  '))
    .join('\n');
}

/** Prints err the way the user asked (JSON or text) and returns the exit code for it. */
export function reportError(io: Io, err: unknown, json: boolean): number {
  let code: string;
  let message: string;
  let exit: number;
  let field: string | undefined;
  if (err instanceof ClientError) {
    ({ code, message, field } = err);
    exit = err.unreachable || err.status === 501 ? EXIT.unavailable : EXIT.refused;
  } else if (err instanceof UsageError) {
    [code, message, exit] = ['BERTH_ERR_INVALID_ARGUMENT', err.message, EXIT.usage];
  } else if (err instanceof NotImplementedError) {
    [code, message, exit] = ['BERTH_ERR_NOT_IMPLEMENTED', err.message, EXIT.unavailable];
  } else {
    [code, message, exit] = [
      'BERTH_ERR_INTERNAL',
      err instanceof Error ? err.message : String(err),
      EXIT.refused,
    ];
  }
  if (json) io.out(JSON.stringify({ error: field ? { code, message, field } : { code, message } }, null, 2));
  else io.err(`berthctl: ${message}`);
  return exit;
}
