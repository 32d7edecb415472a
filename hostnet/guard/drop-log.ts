// Follows the guard's drop log: every drop rule NFLOGs (at most 10 frames/s
// per in-port and reason) to this berthd's group, and a long-lived
// `tcpdump -i nflog:<group> -w -` child streams them as pcap, which
// nflog-parse.ts reads. libpcap already speaks NFLOG, so berth needs no
// native netlink binding. The child is restarted with backoff when it dies.
//
// The snap length must cover the largest frame: libpcap reads NFLOG into a
// buffer of snaplen + 128 bytes, and the kernel batches several messages into
// one read, so a smaller snap length cut the second message of a batch short
// (seen here: an ARP record with its payload replaced by stale bytes) and a
// large DHCP frame stopped tcpdump ("Message truncated").
import { spawn } from 'node:child_process';
import { type CommandRunner, osCommandRunner } from '../../base/command.js';
import { causeText } from '../../base/errors.js';
import type { ObserveLogger } from '../observe/monitor.js';
import {
  type Backoff,
  type ChildEvents,
  type ChildHandle,
  RestartingChild,
} from '../observe/restarting-child.js';
import { type NflogDrop, PcapReader, parseNflog } from './nflog-parse.js';

export interface GuardDropEvent extends NflogDrop {
  /** The port's name, or `if<index>` when it was gone before it could be looked up. */
  port: string;
}

export interface StreamHandlers {
  spawned(): void;
  data(chunk: Buffer): void;
  exit(reason: string): void;
}

/** The seam for a child whose stdout is binary; tests feed bytes by hand. */
export interface StreamSpawner {
  spawn(argv: string[], handlers: StreamHandlers): { kill(): void };
}

export const osStreamSpawner: StreamSpawner = {
  spawn(argv, handlers) {
    // If berthd is killed, the kernel kills its reader too.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let done = false;
    const finish = (reason: string) => {
      if (done) return;
      done = true;
      const said = stderr.trim().split('\n').slice(-2).join('; ');
      handlers.exit(said ? `${reason}: ${said}` : reason);
    };
    child.on('spawn', () => handlers.spawned());
    child.on('error', (err) => finish(err.message));
    child.on('close', (code, signal) => finish(signal ? `killed by ${signal}` : `exit code ${code}`));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => {
      stderr = (stderr + c).slice(-2048);
    });
    child.stdout.on('data', (c: Buffer) => {
      if (!done) handlers.data(c);
    });
    return {
      kill() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      },
    };
  },
};

export interface DropLogOptions {
  /** Names.logGroup(). */
  group: number;
  onDrop(event: GuardDropEvent): void;
  logger?: ObserveLogger;
  spawner?: StreamSpawner;
  /** Looks ports up by ifindex (`ip -j link show`). */
  runner?: CommandRunner;
  backoff?: Backoff;
}

/** How often a miss may re-read the link table; a flood from a vanished port must not spawn ip per frame. */
const LINKS_EVERY_MS = 1000;

export class DropLog {
  private readonly reader: RestartingChild;
  private names = new Map<number, string>();
  private linksReadAt = 0;
  private reading: Promise<void> | undefined;

  constructor(private readonly o: DropLogOptions) {
    this.reader = new RestartingChild({
      start: (events) => this.spawn(events),
      label: 'guard drop log: tcpdump',
      fields: { group: o.group },
      logger: o.logger,
      backoff: o.backoff,
    });
  }

  start(): void {
    this.reader.start();
  }

  stop(): void {
    this.reader.stop();
  }

  private spawn(events: ChildEvents): ChildHandle {
    const pcap = new PcapReader();
    // -Z root: tcpdump otherwise switches to user tcpdump, and a credential
    // change clears the parent-death signal, so a killed berthd left it running.
    const argv = ['tcpdump', '-Z', 'root', '-i', `nflog:${this.o.group}`, '-U', '-w', '-', '-s', '65535'];
    const child = (this.o.spawner ?? osStreamSpawner).spawn(argv, {
      spawned: events.spawned,
      data: (chunk) => {
        try {
          for (const record of pcap.push(chunk)) {
            const drop = parseNflog(record, pcap.littleEndian);
            if (drop) void this.emit(drop);
          }
        } catch (err) {
          this.o.logger?.error?.({ err: causeText(err) }, 'guard drop log: unreadable stream; restarting');
          child.kill();
        }
      },
      exit: events.exit,
    });
    return child;
  }

  private async emit(drop: NflogDrop): Promise<void> {
    let port = this.names.get(drop.ifindex);
    if (port === undefined) {
      await this.readLinks();
      port = this.names.get(drop.ifindex) ?? `if${drop.ifindex}`;
    }
    this.o.onDrop({ ...drop, port });
  }

  /** ifindex -> name for every link; misses in one burst share one read. */
  private readLinks(): Promise<void> {
    if (this.reading) return this.reading;
    if (Date.now() - this.linksReadAt < LINKS_EVERY_MS) return Promise.resolve();
    this.reading = (async () => {
      try {
        const { stdout } = await (this.o.runner ?? osCommandRunner).run(['ip', '-j', 'link', 'show']);
        const links = JSON.parse(stdout) as { ifindex: number; ifname: string }[];
        this.names = new Map(links.map((l) => [l.ifindex, l.ifname]));
      } catch (err) {
        this.o.logger?.warn?.({ err: causeText(err) }, 'guard drop log: could not read the link table');
      } finally {
        this.linksReadAt = Date.now();
        this.reading = undefined;
      }
    })();
    return this.reading;
  }
}
