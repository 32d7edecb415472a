// sd_notify(3) over the NOTIFY_SOCKET datagram socket, plus the watchdog
// keep-alive. Node has no AF_UNIX datagram sockets, hence unix-dgram.
import { createRequire } from 'node:module';

export interface Notifier {
  notify(state: Record<string, string | number>): void;
  /** Starts WATCHDOG=1 pings at half the interval systemd asked for; returns the stop. */
  startWatchdog(): () => void;
  close(): void;
}

interface DgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, cb?: (err?: Error) => void): void;
  on(event: 'error', fn: (err: Error) => void): void;
  close(): void;
}

const require = createRequire(import.meta.url);

export function formatState(state: Record<string, string | number>): string {
  return Object.entries(state)
    .map(([k, v]) => `${k}=${String(v).replaceAll('\n', ' ')}`)
    .join('\n');
}

/** Microseconds from WATCHDOG_USEC when it is meant for this process. */
export function watchdogUsec(env: NodeJS.ProcessEnv, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return usec;
}

export function createNotifier(
  env: NodeJS.ProcessEnv = process.env,
  onError: (err: Error) => void = () => {},
): Notifier {
  const raw = env.NOTIFY_SOCKET;
  if (!raw) {
    return { notify() {}, startWatchdog: () => () => {}, close() {} };
  }
  // An abstract socket is written "@name"; the kernel wants a leading NUL.
  const path = raw.startsWith('@') ? `\0${raw.slice(1)}` : raw;
  const { createSocket } = require('unix-dgram') as { createSocket(type: 'unix_dgram'): DgramSocket };
  const socket = createSocket('unix_dgram');
  socket.on('error', onError);
  const notify = (state: Record<string, string | number>) => {
    const msg = Buffer.from(formatState(state));
    socket.send(msg, 0, msg.length, path, (err) => err && onError(err));
  };
  return {
    notify,
    startWatchdog() {
      const usec = watchdogUsec(env);
      if (usec === undefined) return () => {};
      const timer = setInterval(() => notify({ WATCHDOG: 1 }), Math.max(1, Math.floor(usec / 2000)));
      timer.unref();
      return () => clearInterval(timer);
    },
    close: () => socket.close(),
  };
}
