// berthd's side of the endpoints: one per network, inside the network's
// namespace, reached through its control socket. At start berthd first tries
// to adopt a running endpoint (left by the berthd before a restart); it starts
// a new one only when none answers, or replaces one whose build or config
// differs. A lost endpoint is reattached or restarted with backoff. Stopping
// berthd detaches: endpoints keep serving guests until the next berthd.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { buildId } from './build-id.js';
import { connectEndpoint, type EndpointLink } from './endpoint-link.js';
import type { EndpointConfig, Hello, Notice } from './protocol.js';
import { DELIVER_METHOD } from './refusal-queue.js';

/** Starts the endpoint entry with args in netns, detached from berthd. */
export type EndpointSpawner = (netns: string, entry: string, args: string[], logFile: string) => ChildProcess;

export const spawnInNetns: EndpointSpawner = (netns, entry, args, logFile) => {
  const out = openSync(logFile, 'a', 0o600);
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, entry, ...args], {
    detached: true, // its own session: a signal to berthd's group does not reach it
    stdio: ['ignore', out, out],
  });
  child.unref();
  return child;
};

export interface EndpointHandlers {
  /** A DHCP datagram heard on the network; answer with supervisor.send(network, dhcp-send). */
  dhcpPacket(network: string, data: Buffer, address: string, port: number): void;
  /** An RPC from the endpoint (metadata lookups); the value goes back as the result. */
  call(network: string, method: string, params: unknown): Promise<unknown>;
}

export interface EndpointStatus {
  network: string;
  netns: string;
  pid: number | undefined;
  ready: boolean;
  /** True when this berthd found the endpoint running and took it over. */
  adopted: boolean;
  restarts: number;
  startedAt: string | undefined;
  ports: { dhcp: number; metadata: number } | undefined;
}

interface Slot {
  config: EndpointConfig;
  netns: string;
  link?: EndpointLink;
  pid?: number;
  ready: boolean;
  adopted: boolean;
  restarts: number;
  backoffMs: number;
  startedAt?: number;
  timer?: NodeJS.Timeout;
  stopped: boolean;
  ports?: { dhcp: number; metadata: number };
  /** Callers of ready() waiting for this endpoint. */
  waiters: ((ok: boolean) => void)[];
  /** An endpoint spawned but not answering yet (a slow machine): waited for, never doubled. */
  starting?: { proc: ChildProcess; since: number };
}

export interface SupervisorOptions {
  /** Where the control sockets and endpoint logs live (kept across restarts). */
  dir: string;
  spawner?: EndpointSpawner;
  entry?: string;
  orphanSeconds?: number;
  /** How long one wait for a new endpoint's control socket lasts before the slot retries (15 s). */
  spawnDeadlineMs?: number;
  /** A spawned endpoint still silent after this long is hung: killed, and another started (120 s). */
  hungStartMs?: number;
}

const HUNG_START_MS = 120_000;

const MIN_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 10_000;
const HEALTHY_MS = 30_000;

export class EndpointSupervisor {
  private readonly slots = new Map<string, Slot>();
  private readonly entry: string;
  /** The build of the code this supervisor would start, to compare running endpoints with. */
  private readonly build: string;
  /** Called each time an endpoint reports ready (tests, status). */
  onReady: ((network: string) => void) | undefined;

  constructor(
    private readonly log: Logger,
    private readonly handlers: EndpointHandlers,
    private readonly opts: SupervisorOptions,
  ) {
    this.entry = opts.entry ?? fileURLToPath(new URL('./main.js', import.meta.url));
    this.build = buildId(this.entry);
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  }

  private socketPath(network: string): string {
    return join(this.opts.dir, `${network}.sock`);
  }

  /** Attaches to or starts the network's endpoint; a changed config replaces it. */
  ensure(netns: string, config: EndpointConfig): void {
    const slot = this.slots.get(config.network);
    if (slot && !slot.stopped && sameConfig(slot.config, config) && slot.netns === netns) return;
    if (slot) this.stop(config.network);
    const fresh: Slot = {
      config,
      netns,
      ready: false,
      adopted: false,
      restarts: 0,
      backoffMs: MIN_BACKOFF_MS,
      stopped: false,
      waiters: [],
    };
    this.slots.set(config.network, fresh);
    void this.attach(fresh);
  }

  private async attach(slot: Slot): Promise<void> {
    const { network } = slot.config;
    const log = this.log.child({ network, netns: slot.netns });
    const path = this.socketPath(network);
    try {
      let link = await connectEndpoint(path);
      let hello = link ? await link.hello() : undefined;
      if (link && hello && !this.adoptable(slot, hello)) {
        log.info({ pid: hello.pid, build: hello.build }, 'replacing endpoint of another build or config');
        // It hands over the refusals it queued while no berthd was there right after
        // its hello (refusal-queue.ts): write them before it goes.
        const old = link;
        old.onMessage((msg) => {
          if (msg.t === 'call' && msg.method === DELIVER_METHOD)
            old.answer(msg, this.handlers.call(network, msg.method, msg.params));
        });
        await link.exitAndWait();
        link = undefined;
      }
      if (!link || !hello) {
        const prev = slot.starting?.proc;
        if (prev && (prev.exitCode !== null || prev.signalCode !== null)) slot.starting = undefined;
        const proc = slot.starting?.proc ?? this.spawn(slot, path, log);
        slot.starting ??= { proc, since: Date.now() };
        slot.startedAt = Date.now();
        link = await connectEndpoint(path, proc, this.opts.spawnDeadlineMs);
        hello = link ? await link.hello() : undefined;
        if (!link || !hello) {
          link?.close();
          const alive = proc.exitCode === null && proc.signalCode === null;
          // Under load (a TCG VM) an endpoint may take longer than one wait: keep
          // waiting for it rather than start a second beside it. A hung one goes.
          if (alive && Date.now() - slot.starting.since < (this.opts.hungStartMs ?? HUNG_START_MS))
            throw new Error(
              'the new endpoint has not answered on its control socket yet; still waiting for it',
            );
          if (alive) proc.kill('SIGKILL');
          slot.starting = undefined;
          throw new Error('the new endpoint did not answer on its control socket');
        }
        slot.starting = undefined;
        slot.adopted = false;
        link.send({ t: 'config', config: slot.config });
        log.info({ pid: hello.pid }, 'endpoint started');
      } else {
        slot.adopted = true;
        slot.startedAt ??= Date.now();
        // Who is who may have changed while no berthd watched: forget cached callers.
        link.send({ t: 'invalidate', all: true });
        log.info({ pid: hello.pid, ports: hello.ports }, 'endpoint adopted');
      }
      if (slot.stopped) {
        link.send({ t: 'exit' });
        return;
      }
      this.bind(slot, link, hello);
    } catch (err) {
      log.error(
        { err: (err as Error).message, restart_in_ms: slot.backoffMs },
        'endpoint unavailable; retrying',
      );
      this.retry(slot);
    }
  }

  private spawn(slot: Slot, path: string, log: Logger): ChildProcess {
    const child = this.opts.spawner ?? spawnInNetns;
    const args = [
      '--control',
      path,
      '--network',
      slot.config.network,
      '--orphan-seconds',
      `${this.opts.orphanSeconds ?? 600}`,
    ];
    const proc = child(slot.netns, this.entry, args, join(this.opts.dir, `${slot.config.network}.log`));
    proc.on('error', (err) => log.error({ err: err.message }, 'endpoint could not be spawned'));
    return proc;
  }

  private adoptable(slot: Slot, hello: Hello): boolean {
    return (
      hello.build === this.build &&
      hello.config !== undefined &&
      sameConfig(hello.config, slot.config) &&
      sameNamespace(slot.netns, hello.netnsInode)
    );
  }

  private bind(slot: Slot, link: EndpointLink, hello: Hello): void {
    const { network } = slot.config;
    slot.link = link;
    slot.pid = hello.pid;
    if (hello.ports) this.markReady(slot, hello.ports);
    link.onMessage((msg) => {
      switch (msg.t) {
        case 'ready':
          this.markReady(slot, { dhcp: msg.dhcpPort, metadata: msg.metadataPort });
          return;
        case 'dhcp-packet':
          this.handlers.dhcpPacket(network, msg.data, msg.address, msg.port);
          return;
        case 'log':
          this.log[msg.level]({ network, ...msg.fields }, `endpoint: ${msg.msg}`);
          return;
        case 'call':
          link.answer(msg, this.handlers.call(network, msg.method, msg.params));
          return;
      }
    });
    link.onClose(() => {
      if (slot.link !== link) return;
      slot.link = undefined;
      slot.ready = false;
      if (slot.stopped) return;
      this.log.error({ network, pid: slot.pid, restart_in_ms: slot.backoffMs }, 'endpoint lost; restarting');
      this.retry(slot);
    });
  }

  /**
   * Resolves true once the network's endpoint reports ready, false after
   * timeoutMs (or at once when there is no such endpoint).
   */
  ready(network: string, timeoutMs: number): Promise<boolean> {
    const slot = this.slots.get(network);
    if (!slot) return Promise.resolve(false);
    if (slot.ready) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = (ok: boolean) => {
        clearTimeout(timer);
        resolve(ok);
      };
      const timer = setTimeout(() => {
        slot.waiters = slot.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      slot.waiters.push(waiter);
    });
  }

  private markReady(slot: Slot, ports: { dhcp: number; metadata: number }): void {
    for (const waiter of slot.waiters.splice(0)) waiter(true);
    slot.ready = true;
    slot.ports = ports;
    this.log.info(
      { network: slot.config.network, dhcp_port: ports.dhcp, metadata_port: ports.metadata },
      'endpoint ready',
    );
    this.onReady?.(slot.config.network);
  }

  private retry(slot: Slot): void {
    if (slot.stopped) return;
    if (Date.now() - (slot.startedAt ?? Date.now()) > HEALTHY_MS) slot.backoffMs = MIN_BACKOFF_MS;
    slot.timer = setTimeout(() => {
      slot.restarts += 1;
      if (!slot.stopped) void this.attach(slot);
    }, slot.backoffMs);
    slot.backoffMs = Math.min(slot.backoffMs * 2, MAX_BACKOFF_MS);
  }

  send(network: string, notice: Notice): boolean {
    return this.slots.get(network)?.link?.send(notice) ?? false;
  }

  broadcast(notice: Notice): void {
    for (const network of this.slots.keys()) this.send(network, notice);
  }

  /** Ends the network's endpoint for good (the network is deleted or changed). */
  stop(network: string): void {
    const slot = this.slots.get(network);
    if (!slot) return;
    slot.stopped = true;
    if (slot.timer) clearTimeout(slot.timer);
    slot.link?.send({ t: 'exit' });
    // One still starting never gets a link to be told: it goes now.
    slot.starting?.proc.kill('SIGKILL');
    this.slots.delete(network);
  }

  stopAll(): void {
    for (const network of [...this.slots.keys()]) this.stop(network);
  }

  /** berthd is stopping: let go of every endpoint and leave it serving guests. */
  detachAll(): void {
    for (const slot of this.slots.values()) {
      slot.stopped = true;
      if (slot.timer) clearTimeout(slot.timer);
      slot.link?.close();
    }
    this.slots.clear();
  }

  status(): EndpointStatus[] {
    return [...this.slots.values()].map((s) => ({
      network: s.config.network,
      netns: s.netns,
      pid: s.pid,
      ready: s.ready,
      adopted: s.adopted,
      restarts: s.restarts,
      startedAt: s.startedAt === undefined ? undefined : new Date(s.startedAt).toISOString(),
      ports: s.ports,
    }));
  }
}

/**
 * False when the endpoint lives in a namespace that is no longer the one named
 * netns (deleted and re-created while no berthd watched): it would serve nobody.
 */
function sameNamespace(netns: string, inode: number): boolean {
  try {
    return statSync(`/run/netns/${netns}`).ino === inode;
  } catch {
    return true; // no named namespace (endpoints run without one in tests)
  }
}

/** Deep: the config carries nested values (the metadata rate limit). */
function sameConfig(a: EndpointConfig, b: EndpointConfig): boolean {
  return isDeepStrictEqual(a, b);
}
