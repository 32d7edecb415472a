// The Hypervisor over libvirt-dbus (org.libvirt on the system bus), spoken
// with dbus-next's low-level calls: explicit signatures, no introspection
// round trip, about 1 ms per call.
//
// Staying connected: libvirt-dbus registers its libvirt event callbacks only
// when it opens its libvirt connection, and it reopens that connection only
// when a method is called (measured: after a libvirtd restart no DomainEvent
// arrives until someone calls). So a heartbeat calls it every second, and a
// `resync` event tells listeners to re-read state whenever events may have
// been missed: a failed call, a new owner of org.libvirt, a new D-Bus
// connection, or a new libvirtd (its pid file changed).
import { readFile } from 'node:fs/promises';
import dbus from 'dbus-next';
import { parseMacs, parseOwner } from './domain-xml.js';
import {
  DOMAIN_EVENT_KINDS,
  DOMAIN_STATES,
  type DomainInfo,
  type DomainState,
  type Hypervisor,
  type HypervisorEvent,
} from './hypervisor.js';

type Bus = dbus.MessageBus;

const SERVICE = 'org.libvirt';
const CONNECT_IFACE = 'org.libvirt.Connect';
const DOMAIN_IFACE = 'org.libvirt.Domain';

export interface LibvirtDbusOptions {
  /** Opens a bus connection; the system bus by default. */
  connectBus?: () => Bus;
  /** libvirt-dbus object path of the connection: /org/libvirt/QEMU for qemu:///system. */
  path?: string;
  heartbeatMs?: number;
  /** Every this many ms a resync is emitted anyway: polling only as the fallback. */
  resyncMs?: number;
  callTimeoutMs?: number;
  /** Changes when libvirtd restarted; by default /run/libvirtd.pid's content. */
  libvirtdGeneration?: () => Promise<string | undefined>;
}

export class LibvirtError extends Error {
  constructor(
    message: string,
    readonly dbusName: string | undefined,
  ) {
    super(message);
    this.name = 'LibvirtError';
  }

  get notFound(): boolean {
    return /not found|no domain with matching|Domain not found/i.test(this.message);
  }
}

const pidFileGeneration = async () => {
  try {
    return (await readFile('/run/libvirtd.pid', 'utf8')).trim();
  } catch {
    return undefined;
  }
};

/** libvirt-dbus names a domain's object by its uuid: _ + uuid with '-' as '_'. */
export function uuidOfPath(path: string): string {
  const last = path.slice(path.lastIndexOf('/') + 1);
  return last.replace(/^_/, '').replaceAll('_', '-');
}

export class LibvirtDbus implements Hypervisor {
  private bus: Bus | undefined;
  private readonly path: string;
  private readonly listeners = new Set<(e: HypervisorEvent) => void>();
  private readonly names = new Map<string, string>();
  /** Rejects when its bus's connection fails. */
  private readonly broken = new WeakMap<Bus, Promise<never>>();
  private heartbeat: NodeJS.Timeout | undefined;
  private healthy: boolean | undefined;
  private generation: string | undefined;
  private lastResync = Date.now();
  private closed = false;

  constructor(private readonly opts: LibvirtDbusOptions = {}) {
    this.path = opts.path ?? '/org/libvirt/QEMU';
  }

  private emit(event: HypervisorEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A listener's failure is its own; the others still hear the event.
      }
    }
  }

  private connect(): Bus {
    if (this.bus) return this.bus;
    const bus = (this.opts.connectBus ?? (() => dbus.systemBus()))();
    let fail: (err: Error) => void = () => {};
    const broken = new Promise<never>((_, reject) => {
      fail = reject;
    });
    broken.catch(() => undefined);
    this.broken.set(bus, broken);
    // Without a listener an 'error' would throw; a broken bus is dropped and reopened,
    // and its calls in flight fail now instead of at their deadline.
    bus.on('error', (err: unknown) => {
      const reason = `D-Bus connection failed: ${String(err)}`;
      fail(new LibvirtError(reason, undefined));
      this.dropBus(bus, reason);
    });
    bus.on('message', (msg: dbus.Message) => this.onMessage(msg));
    this.bus = bus;
    const matches = [
      `type='signal',sender='${SERVICE}',interface='${CONNECT_IFACE}',member='DomainEvent',path='${this.path}'`,
      `type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='${SERVICE}'`,
    ];
    for (const rule of matches)
      this.rawCall(
        bus,
        'org.freedesktop.DBus',
        '/org/freedesktop/DBus',
        'org.freedesktop.DBus',
        'AddMatch',
        's',
        [rule],
      ).catch((err) => this.dropBus(bus, `could not subscribe: ${String(err)}`));
    this.startHeartbeat();
    return bus;
  }

  private dropBus(bus: Bus, reason: string): void {
    if (this.bus !== bus) return;
    this.bus = undefined;
    try {
      bus.disconnect();
    } catch {
      // already gone
    }
    this.markUnhealthy(reason);
  }

  private markUnhealthy(reason: string): void {
    if (this.healthy === false) return;
    this.healthy = false;
    this.emit({ type: 'disconnected', reason });
  }

  private onMessage(msg: dbus.Message): void {
    if (msg.type !== dbus.MessageType.SIGNAL) return;
    if (msg.interface === CONNECT_IFACE && msg.member === 'DomainEvent') {
      const [path, event, detail] = msg.body as [string, number, number];
      const kind = DOMAIN_EVENT_KINDS[event];
      if (!kind) return;
      const uuid = uuidOfPath(path);
      const name = this.names.get(uuid);
      this.emit({ type: 'domain', kind, detail, uuid, ...(name !== undefined ? { name } : {}) });
    } else if (msg.member === 'NameOwnerChanged' && msg.body[0] === SERVICE && msg.body[2]) {
      // A new libvirt-dbus: wake it (it then registers its callbacks) and resync.
      void this.beat(true);
    }
  }

  private startHeartbeat(): void {
    if (this.heartbeat || this.closed) return;
    this.heartbeat = setInterval(() => void this.beat(false), this.opts.heartbeatMs ?? 1000);
    this.heartbeat.unref();
  }

  /** One cheap call keeps libvirt-dbus connected to libvirtd; detects gaps in the event stream. */
  private async beat(forceResync: boolean): Promise<void> {
    if (this.closed) return;
    let resync = forceResync;
    try {
      await this.connectCall('org.freedesktop.DBus.Properties', 'Get', 'ss', [CONNECT_IFACE, 'Version']);
    } catch (err) {
      this.markUnhealthy(err instanceof Error ? err.message : String(err));
      return;
    }
    if (this.healthy === false) resync = true;
    this.healthy = true;
    const gen = await (this.opts.libvirtdGeneration ?? pidFileGeneration)();
    if (this.generation !== undefined && gen !== this.generation) resync = true;
    this.generation = gen;
    if (Date.now() - this.lastResync >= (this.opts.resyncMs ?? 60_000)) resync = true;
    if (resync) {
      this.lastResync = Date.now();
      this.emit({ type: 'resync' });
    }
  }

  private async rawCall(
    bus: Bus,
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature: string,
    body: unknown[],
  ): Promise<unknown[]> {
    const msg = new dbus.Message({ destination, path, interface: iface, member, signature, body });
    let timer: NodeJS.Timeout | undefined;
    const timeoutMs = this.opts.callTimeoutMs ?? 30_000;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LibvirtError(`${iface}.${member}: no answer within ${timeoutMs} ms`, undefined)),
        timeoutMs,
      );
    });
    try {
      const reply = await Promise.race([bus.call(msg), timeout, this.broken.get(bus) ?? timeout]);
      return reply?.body ?? [];
    } catch (err) {
      if (err instanceof LibvirtError) {
        // A bus that does not answer is dropped; the next call opens a fresh one.
        this.dropBus(bus, err.message);
        throw err;
      }
      const e = err as { type?: string; text?: string; message?: string };
      throw new LibvirtError(e.text ?? e.message ?? String(err), e.type);
    } finally {
      clearTimeout(timer);
    }
  }

  private connectCall(iface: string, member: string, signature: string, body: unknown[]) {
    return this.rawCall(this.connect(), SERVICE, this.path, iface, member, signature, body);
  }

  private domainCall(path: string, member: string, signature: string, body: unknown[]) {
    return this.rawCall(this.connect(), SERVICE, path, DOMAIN_IFACE, member, signature, body);
  }

  private async domainProp<T>(path: string, prop: string): Promise<T> {
    const [v] = await this.rawCall(
      this.connect(),
      SERVICE,
      path,
      'org.freedesktop.DBus.Properties',
      'Get',
      'ss',
      [DOMAIN_IFACE, prop],
    );
    return (v as dbus.Variant).value as T;
  }

  private async lookup(name: string): Promise<string | undefined> {
    try {
      const [path] = await this.connectCall(CONNECT_IFACE, 'DomainLookupByName', 's', [name]);
      return path as string;
    } catch (err) {
      if (err instanceof LibvirtError && err.notFound) return undefined;
      throw err;
    }
  }

  private async mustLookup(name: string): Promise<string> {
    const path = await this.lookup(name);
    if (!path) throw new LibvirtError(`Domain not found: no domain with matching name '${name}'`, undefined);
    return path;
  }

  async define(xml: string): Promise<string> {
    const [path] = await this.connectCall(CONNECT_IFACE, 'DomainDefineXML', 's', [xml]);
    const uuid = uuidOfPath(path as string);
    const name = xml.match(/<name>([^<]*)<\/name>/)?.[1];
    if (name !== undefined) this.names.set(uuid, name);
    return uuid;
  }

  async start(name: string): Promise<void> {
    await this.domainCall(await this.mustLookup(name), 'Create', 'u', [0]);
  }

  async shutdown(name: string): Promise<void> {
    await this.domainCall(await this.mustLookup(name), 'Shutdown', 'u', [0]);
  }

  async reboot(name: string): Promise<void> {
    await this.domainCall(await this.mustLookup(name), 'Reboot', 'u', [0]);
  }

  async destroy(name: string): Promise<void> {
    const path = await this.lookup(name);
    if (!path) return;
    try {
      await this.domainCall(path, 'Destroy', 'u', [0]);
    } catch (err) {
      // "domain is not running" (or gone meanwhile) is what destroy wanted.
      if (err instanceof LibvirtError && (err.notFound || /not running/i.test(err.message))) return;
      throw err;
    }
  }

  async undefine(name: string): Promise<void> {
    const path = await this.lookup(name);
    if (!path) return;
    try {
      await this.domainCall(path, 'Undefine', 'u', [0]);
    } catch (err) {
      if (err instanceof LibvirtError && err.notFound) return;
      throw err;
    }
  }

  async state(name: string): Promise<DomainState | undefined> {
    const path = await this.lookup(name);
    if (!path) return undefined;
    try {
      return await this.stateOf(path);
    } catch (err) {
      if (err instanceof LibvirtError && err.notFound) return undefined;
      throw err;
    }
  }

  private async stateOf(path: string): Promise<DomainState> {
    const [st] = await this.domainCall(path, 'GetState', 'u', [0]);
    return DOMAIN_STATES[(st as [number, number])[0]] ?? 'nostate';
  }

  async list(filter: { owned?: boolean; prefix?: string } = {}): Promise<DomainInfo[]> {
    const [paths] = await this.connectCall(CONNECT_IFACE, 'ListDomains', 'u', [0]);
    const out: DomainInfo[] = [];
    for (const path of paths as string[]) {
      try {
        const xml = (await this.domainCall(path, 'GetXMLDesc', 'u', [0]))[0] as string;
        const owner = parseOwner(xml);
        if ((filter.owned || filter.prefix !== undefined) && !owner) continue;
        if (filter.prefix !== undefined && owner?.prefix !== filter.prefix) continue;
        const name = xml.match(/<name>([^<]*)<\/name>/)?.[1] ?? (await this.domainProp<string>(path, 'Name'));
        const uuid = uuidOfPath(path);
        this.names.set(uuid, name);
        out.push({
          name,
          uuid,
          state: await this.stateOf(path),
          ...(owner ? { owner } : {}),
          macs: parseMacs(xml),
        });
      } catch (err) {
        // A domain undefined between the listing and the look is simply gone.
        if (err instanceof LibvirtError && err.notFound) continue;
        throw err;
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async macs(): Promise<Set<string>> {
    return new Set((await this.list()).flatMap((d) => d.macs));
  }

  onEvent(listener: (event: HypervisorEvent) => void): () => void {
    this.listeners.add(listener);
    this.connect();
    // The first beat registers libvirt-dbus's callbacks; without a call it may have none.
    void this.beat(false);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.listeners.clear();
    const bus = this.bus;
    this.bus = undefined;
    bus?.disconnect();
  }
}
