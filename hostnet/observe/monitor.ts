// The seam for long-running event sources (`bridge monitor fdb`, `ip monitor
// neigh`): a child whose stdout is read line by line. Tests inject a spawner
// that feeds lines by hand.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface MonitorHandlers {
  /** The child is running; the kernel subscription follows a moment later. */
  spawned(): void;
  line(text: string): void;
  /** Called once, whether the child exited, was killed or never started. */
  exit(reason: string): void;
}

export interface MonitorChild {
  kill(): void;
}

export interface MonitorSpawner {
  spawn(argv: string[], handlers: MonitorHandlers): MonitorChild;
}

/** pino's logger fits; every method is optional so a bare object does too. */
export interface ObserveLogger {
  info?(obj: object, msg?: string): void;
  warn?(obj: object, msg?: string): void;
  error?(obj: object, msg?: string): void;
}

const STDERR_KEEP = 2048;

export const osMonitorSpawner: MonitorSpawner = {
  spawn(argv, handlers) {
    // A monitor of a deleted namespace never writes again, so it would never
    // hit SIGPIPE: if berthd is killed, the kernel must kill its monitors.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let done = false;
    const finish = (reason: string) => {
      if (done) return;
      done = true;
      handlers.exit(stderr.trim() ? `${reason}: ${stderr.trim()}` : reason);
    };
    child.on('spawn', () => handlers.spawned());
    child.on('error', (err) => finish(err.message));
    child.on('close', (code, signal) => finish(signal ? `killed by ${signal}` : `exit code ${code}`));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_KEEP);
    });
    createInterface({ input: child.stdout, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (text) => {
      if (!done) handlers.line(text);
    });
    return {
      kill() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      },
    };
  },
};
