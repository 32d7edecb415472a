// The one seam through which hostnet runs host commands (ip, bridge, nft):
// argv arrays, never a shell. Tests inject a recording runner.
import { execFile } from 'node:child_process';

export interface CommandResult {
  stdout: string;
  stderr: string;
}

export interface CommandRunner {
  /** Resolves with the output, or rejects with CommandError when the exit code is not 0. */
  run(argv: string[], options?: RunOptions): Promise<CommandResult>;
}

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
  /** Told the child's pid once it runs (the guard watch tells berth's own nft writes from others'). */
  onSpawn?: (pid: number) => void;
}

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    /** What the command printed before it failed (`berthctl instance exec` shows it). */
    readonly stdout = '',
  ) {
    super(`${argv.join(' ')}: ${stderr.trim() || `exit code ${exitCode}`}`);
    this.name = 'CommandError';
  }
}

export const osCommandRunner: CommandRunner = {
  run(argv, options = {}) {
    return new Promise((resolve, reject) => {
      const [file, ...args] = argv as [string, ...string[]];
      const child = execFile(
        file,
        args,
        { timeout: options.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
        (err, stdout, stderr) => {
          if (err) {
            const code =
              typeof (err as NodeJS.ErrnoException).code === 'number'
                ? (err as unknown as { code: number }).code
                : null;
            reject(new CommandError(argv, code, stderr || err.message, stdout));
          } else resolve({ stdout, stderr });
        },
      );
      if (child.pid !== undefined) options.onSpawn?.(child.pid);
      if (options.input !== undefined) child.stdin?.end(options.input);
    });
  },
};
