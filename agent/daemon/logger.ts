// Structured JSON logs (pino); human-readable when stderr is a terminal.
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export function createLogger(level: string, stream: NodeJS.WritableStream = process.stderr): Logger {
  const options = { level, base: { service: 'berthd' }, timestamp: pino.stdTimeFunctions.isoTime };
  if ((stream as NodeJS.WriteStream).isTTY) {
    return pino(options, pretty({ destination: stream, colorize: true, sync: true }));
  }
  return pino(options, pino.destination({ dest: 2, sync: true }));
}
