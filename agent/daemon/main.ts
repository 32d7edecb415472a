#!/usr/bin/env node
// berthd: the host agent, in the foreground. Exit codes: 0 after a clean
// stop, 1 when it cannot start or run, 2 for a bad config or usage.
import { Command, CommanderError } from 'commander';
import { BerthError, causeText } from '../../base/errors.js';
import { VERSION } from '../../base/version.js';
import { type LoadedConfig, loadConfig } from '../config/load.js';
import { Daemon } from './daemon.js';
import { createLogger } from './logger.js';
import { createNotifier } from './sd-notify.js';

interface Flags {
  config?: string;
  stateDir?: string;
  socket?: string;
  logLevel?: string;
}

function applyFlags(loaded: LoadedConfig, flags: Flags): LoadedConfig {
  const config = { ...loaded.config };
  if (flags.stateDir) config.state_dir = flags.stateDir;
  if (flags.socket) config.socket = flags.socket;
  if (flags.logLevel) config.log_level = flags.logLevel as typeof config.log_level;
  return { config, source: loaded.source };
}

function fail(err: unknown): never {
  const code = err instanceof BerthError && err.code === 'BERTH_ERR_CONFIG' ? 2 : 1;
  process.stderr.write(`berthd: ${causeText(err)}\n`);
  process.exit(code);
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('berthd')
    .description('berth host agent: guests, MAC pool, bridges, DHCP and metadata by observed identity')
    .version(VERSION)
    .option('--config <file>', 'config file (default /etc/berth/berthd.yaml, else the embedded default)')
    .option('--state-dir <dir>', 'state directory (default /var/lib/berth)')
    .option('--socket <path>', 'admin socket (default /run/berth/berthd.sock)')
    .option('--log-level <level>', 'trace, debug, info, warn or error')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    program.parse(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
    throw err;
  }
  const flags = program.opts<Flags>();
  if (flags.logLevel && !['trace', 'debug', 'info', 'warn', 'error'].includes(flags.logLevel)) {
    fail(
      new BerthError(
        'BERTH_ERR_CONFIG',
        `--log-level: "${flags.logLevel}" is not one of trace, debug, info, warn, error`,
      ),
    );
  }

  const loaded = applyFlags(await loadConfig(flags.config).catch(fail), flags);
  const log = createLogger(loaded.config.log_level);
  const notifier = createNotifier(process.env, (err) => log.warn({ err }, 'sd_notify failed'));
  const daemon = new Daemon(loaded, { log, notifier });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping; guests keep running');
    const force = setTimeout(() => {
      log.error('graceful stop took over 10 s; exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    daemon.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    notifier.notify({ RELOADING: 1, STATUS: 'reloading config' });
    loadConfig(flags.config)
      .then((next) => {
        const kept = daemon.reload(applyFlags(next, flags));
        log.info({ source: next.source, needs_restart: kept }, 'config reloaded');
      })
      .catch((err) => log.error({ err: causeText(err) }, 'config reload refused; keeping the running config'))
      .finally(() => notifier.notify({ READY: 1, STATUS: `serving on ${daemon.config.socket}` }));
  });

  try {
    await daemon.start();
  } catch (err) {
    log.fatal({ err: causeText(err), code: (err as BerthError).code }, 'berthd could not start');
    await daemon.stop().catch(() => undefined);
    fail(err);
  }
}

main(process.argv).catch(fail);
