// berthd's side of the endpoints: one child per network, started inside the
// network's namespace, restarted with backoff when it dies, and stopped with
// berthd. Calls from a child are answered by the handlers berthd registers.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { BerthError } from '../errors.js';
import type { ChildMessage, EndpointConfig, Notice, RpcResponse } from './protocol.js';

export type EndpointSpawner = (netns: string, entry: string) => ChildProcess;

export const spawnInNetns: EndpointSpawner = (netns, entry) =>
  spawn('ip', ['netns', 'exec', netns, process.execPath, entry], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    serialization: 'advanced',
  });

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
  restarts: number;
  startedAt: string | undefined;
  ports: { dhcp: number; metadata: number } | undefined;
}

interface Slot {
  config: EndpointConfig;
  netns: string;
  child?: ChildProcess;
  ready: boolean;
  restarts: number;
  backoffMs: number;
  startedAt?: number;
  timer?: NodeJS.Timeout;
  stopped: boolean;
  ports?: { dhcp: number; metadata: number };
}

const MIN_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 10_000;
const HEALTHY_MS = 30_000;

export class EndpointSupervisor {
  private readonly slots = new Map<string, Slot>();
  private readonly entry: string;
  /** Called each time an endpoint reports ready (tests, status). */
  onReady: ((network: string) => void) | undefined;

  constructor(
    private readonly log: Logger,
    private readonly handlers: EndpointHandlers,
    private readonly spawner: EndpointSpawner = spawnInNetns,
    entry?: string,
  ) {
    this.entry = entry ?? fileURLToPath(new URL('./main.js', import.meta.url));
  }

  /** Starts the network's endpoint unless it runs; a changed config restarts it. */
  ensure(netns: string, config: EndpointConfig): void {
    const slot = this.slots.get(config.network);
    if (
      slot &&
      !slot.stopped &&
      JSON.stringify(slot.config) === JSON.stringify(config) &&
      slot.netns === netns
    )
      return;
    if (slot) this.stop(config.network);
    const fresh: Slot = {
      config,
      netns,
      ready: false,
      restarts: 0,
      backoffMs: MIN_BACKOFF_MS,
      stopped: false,
    };
    this.slots.set(config.network, fresh);
    this.start(fresh);
  }

  private start(slot: Slot): void {
    const { network } = slot.config;
    const child = this.spawner(slot.netns, this.entry);
    slot.child = child;
    slot.ready = false;
    slot.startedAt = Date.now();
    const log = this.log.child({ network, netns: slot.netns });
    child.stderr?.on('data', (c: Buffer) => log.warn({ stderr: c.toString().trim() }, 'endpoint stderr'));
    child.stdout?.resume();
    child.on('message', (msg: ChildMessage) => this.onMessage(slot, msg));
    child.on('error', (err) => log.error({ err: err.message }, 'endpoint could not be spawned'));
    child.on('exit', (code, signal) => {
      if (slot.child !== child) return;
      slot.child = undefined;
      slot.ready = false;
      if (slot.stopped) return;
      const lived = Date.now() - (slot.startedAt ?? Date.now());
      if (lived > HEALTHY_MS) slot.backoffMs = MIN_BACKOFF_MS;
      log.error(
        { code, signal, restart_in_ms: slot.backoffMs, restarts: slot.restarts + 1 },
        'endpoint exited; restarting',
      );
      slot.timer = setTimeout(() => {
        slot.restarts += 1;
        if (!slot.stopped) this.start(slot);
      }, slot.backoffMs);
      slot.backoffMs = Math.min(slot.backoffMs * 2, MAX_BACKOFF_MS);
    });
    child.send({ t: 'config', config: slot.config } satisfies Notice);
    log.info({ pid: child.pid }, 'endpoint started');
  }

  private onMessage(slot: Slot, msg: ChildMessage): void {
    const { network } = slot.config;
    switch (msg.t) {
      case 'ready':
        slot.ready = true;
        slot.ports = { dhcp: msg.dhcpPort, metadata: msg.metadataPort };
        this.log.info(
          { network, dhcp_port: msg.dhcpPort, metadata_port: msg.metadataPort },
          'endpoint ready',
        );
        this.onReady?.(network);
        return;
      case 'dhcp-packet':
        this.handlers.dhcpPacket(network, msg.data, msg.address, msg.port);
        return;
      case 'log':
        this.log[msg.level]({ network, ...msg.fields }, `endpoint: ${msg.msg}`);
        return;
      case 'call':
        this.handlers.call(network, msg.method, msg.params).then(
          (value) => this.reply(slot, { t: 'result', id: msg.id, ok: true, value }),
          (err: unknown) => {
            const e =
              err instanceof BerthError
                ? err
                : new BerthError('BERTH_ERR_INTERNAL', String((err as Error)?.message ?? err));
            this.reply(slot, {
              t: 'result',
              id: msg.id,
              ok: false,
              error: { code: e.code, message: e.message },
            });
          },
        );
    }
  }

  private reply(slot: Slot, msg: RpcResponse): void {
    if (slot.child?.connected) slot.child.send(msg);
  }

  send(network: string, notice: Notice): boolean {
    const child = this.slots.get(network)?.child;
    if (!child?.connected) return false;
    child.send(notice);
    return true;
  }

  broadcast(notice: Notice): void {
    for (const network of this.slots.keys()) this.send(network, notice);
  }

  stop(network: string): void {
    const slot = this.slots.get(network);
    if (!slot) return;
    slot.stopped = true;
    if (slot.timer) clearTimeout(slot.timer);
    slot.child?.kill('SIGTERM');
    this.slots.delete(network);
  }

  stopAll(): void {
    for (const network of [...this.slots.keys()]) this.stop(network);
  }

  status(): EndpointStatus[] {
    return [...this.slots.values()].map((s) => ({
      network: s.config.network,
      netns: s.netns,
      pid: s.child?.pid,
      ready: s.ready,
      restarts: s.restarts,
      startedAt: s.startedAt === undefined ? undefined : new Date(s.startedAt).toISOString(),
      ports: s.ports,
    }));
  }
}
