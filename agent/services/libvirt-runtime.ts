// The libvirt runtime of InstanceService: a verified image, a qcow2 overlay
// (disk images) or direct kernel boot (the test guest), a domain defined and
// started behind the port's guard. Domain events keep instance states; a
// resync (libvirt-dbus reconnected, or every minute) re-reads them. berthd
// starts and serves netns guests when libvirt is absent: the hypervisor is
// made on first need, and a libvirt create then fails saying how to start it.
import { access, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type CommandRunner, osCommandRunner } from '../../base/command.js';
import { BerthError, causeText, couldNot } from '../../base/errors.js';
import type { Names } from '../../hostnet/names.js';
import type { Reverter } from '../../hostnet/reverter.js';
import { createOverlay } from '../../images/qemu-img.js';
import type { ImageStore, VerifiedImage } from '../../images/store.js';
import type { Instance, InstanceCreate } from '../api/types.js';
import { type DomainBoot, domainXml } from '../compute/domain-xml.js';
import type { DomainState, Hypervisor, HypervisorEvent } from '../compute/hypervisor.js';
import { LibvirtDbus } from '../compute/libvirt-dbus.js';
import { readSerialLogCap, type SerialLogCap } from '../compute/serial-log-cap.js';
import { detectVirtType, type VirtTypeChoice } from '../compute/virt-type.js';

type State = Instance['state'];

/** What the runtime needs of InstanceService: records by uuid and a way to change a state. */
export interface InstanceSink {
  all(): Instance[];
  setState(id: string, state: State): Promise<void>;
}

export interface LibvirtRuntimeOptions {
  stateDir: string;
  names: Names;
  hostId: () => string;
  images: ImageStore;
  log: Logger;
  runner?: CommandRunner;
  makeHypervisor?: () => Hypervisor;
  virtType?: () => Promise<VirtTypeChoice>;
  /** Must exist before libvirt is tried (a missing one names what to start). */
  sockets?: string[];
  /** The cap on a guest's serial log in effect (virtlogd's; serial-log-cap.ts). */
  serialLogCap?: () => Promise<SerialLogCap>;
}

const LIBVIRT_SOCKETS = ['/run/dbus/system_bus_socket', '/run/libvirt/libvirt-sock'];
const HOW_TO_START = 'start it with scripts/libvirt-up.sh (dbus, virtlogd, libvirtd, libvirt-dbus)';

/** libvirt's state as an instance state; undefined leaves the instance as it is. */
export function stateOfDomain(s: DomainState): State | undefined {
  if (s === 'running' || s === 'blocked' || s === 'paused') return 'running';
  if (s === 'shutoff' || s === 'crashed' || s === 'shutdown') return 'stopped';
  return undefined;
}

/** A disk boots by its own bootloader, unless its image carries a kernel (then it rides along as vda). */
export function bootOf(image: VerifiedImage, overlay: string | undefined): DomainBoot {
  if (image.kind === 'disk' && !image.kernel) return { kind: 'disk', disk: overlay as string };
  return {
    kind: 'kernel',
    kernel: image.kernel as string,
    ...(image.initrd ? { initrd: image.initrd } : {}),
    ...(image.cmdline ? { cmdline: image.cmdline } : {}),
    ...(overlay ? { disk: overlay } : {}),
  };
}

export class LibvirtRuntime {
  /** MACs of every domain libvirt knows (berth's or not); the MAC pool never hands them out. */
  readonly macs = new Set<string>();
  private hv: Hypervisor | undefined;
  private connecting: Promise<Hypervisor> | undefined;
  private sink: InstanceSink | undefined;
  private virt: VirtTypeChoice | undefined;
  private readonly runner: CommandRunner;
  private closed = false;
  private orphanDomains = new Set<string>();

  constructor(private readonly o: LibvirtRuntimeOptions) {
    this.runner = o.runner ?? osCommandRunner;
  }

  get images(): ImageStore {
    return this.o.images;
  }

  attach(sink: InstanceSink): void {
    this.sink = sink;
  }

  domainName(rec: Pick<Instance, 'name'>): string {
    return `${this.o.names.prefix}-${rec.name}`;
  }

  consoleLog(id: string): string {
    return join(this.instanceDir(id), 'serial.log');
  }

  private instanceDir(id: string): string {
    return join(this.o.stateDir, 'instances', id);
  }

  /**
   * The hypervisor, connected on first use; throws BERTH_ERR_HOST_OP saying what is missing.
   * A caller that joins an attempt already under way and sees it fail gets one
   * attempt of its own: the earlier one may have begun before libvirt was up
   * (berthd's start, a stale socket file) and spent its deadline on a dead bus.
   */
  async hypervisor(): Promise<Hypervisor> {
    if (this.hv) return this.hv;
    const joined = this.connecting !== undefined;
    try {
      return await this.attempt();
    } catch (err) {
      if (!joined || this.closed) throw err;
      return this.hv ?? (await this.attempt());
    }
  }

  private attempt(): Promise<Hypervisor> {
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<Hypervisor> {
    for (const sock of this.o.sockets ?? LIBVIRT_SOCKETS) {
      const there = await access(sock).then(
        () => true,
        () => false,
      );
      if (!there)
        throw new BerthError(
          'BERTH_ERR_HOST_OP',
          `libvirt is not running: ${sock} is missing; ${HOW_TO_START}`,
        );
    }
    const hv = this.o.makeHypervisor?.() ?? new LibvirtDbus({ callTimeoutMs: 10_000 });
    try {
      await hv.list();
    } catch (err) {
      await hv.close().catch(() => undefined);
      throw new BerthError(
        'BERTH_ERR_HOST_OP',
        `libvirt does not answer over D-Bus (${causeText(err)}); ${HOW_TO_START}`,
        { cause: err },
      );
    }
    this.hv = hv;
    hv.onEvent((e) => void this.onEvent(e));
    await this.resync();
    this.o.log.info('connected to libvirt (libvirt-dbus)');
    await this.reportSerialLogCap();
    return hv;
  }

  /** Says how much disk a guest's console may take, or warns that nothing bounds it. */
  private async reportSerialLogCap(): Promise<void> {
    const cap = await (this.o.serialLogCap ?? readSerialLogCap)().catch(
      (err: unknown): SerialLogCap => ({ bounded: false, reason: causeText(err) }),
    );
    if (cap.bounded)
      this.o.log.info(
        { max_file_bytes: cap.maxFileBytes, backups: cap.backups, total_bytes: cap.totalBytes },
        'guest serial logs are capped by virtlogd',
      );
    else
      this.o.log.warn(
        { reason: cap.reason },
        'guest serial logs are not capped: a guest can fill the disk; run scripts/libvirt-up.sh',
      );
  }

  /** At berthd start: connect when berth has libvirt guests or libvirt runs; never fails the start. */
  async start(): Promise<void> {
    const needed = (this.sink?.all() ?? []).some((r) => r.runtime === 'libvirt');
    const present = await access('/run/libvirt/libvirt-sock').then(
      () => true,
      () => false,
    );
    if (!needed && !present) return;
    await this.hypervisor().catch((err) => {
      this.o.log[needed ? 'error' : 'info']({ err: causeText(err) }, 'libvirt is not available');
      // berth's guests need their states: try again until libvirt is back.
      if (needed && !this.closed) setTimeout(() => void this.start(), 10_000).unref();
    });
  }

  private async onEvent(e: HypervisorEvent): Promise<void> {
    if (e.type === 'resync') return void (await this.resync().catch(() => undefined));
    if (e.type !== 'domain') return;
    if (e.kind === 'defined' || e.kind === 'undefined') void this.refreshMacs();
    const rec = this.sink?.all().find((r) => r.runtime === 'libvirt' && r.uuid === e.uuid);
    if (!rec || !this.sink) return;
    const next: State | undefined =
      e.kind === 'started' || e.kind === 'resumed'
        ? 'running'
        : e.kind === 'stopped' || e.kind === 'crashed'
          ? 'stopped'
          : e.kind === 'undefined'
            ? 'missing'
            : undefined;
    if (!next || next === rec.state) return;
    this.o.log.info(
      { instance: rec.id, name: rec.name, event: e.kind, detail: e.detail, to: next },
      'instance state from a libvirt event',
    );
    await this.sink.setState(rec.id, next).catch(() => undefined);
  }

  private async refreshMacs(): Promise<void> {
    if (!this.hv) return;
    try {
      const now = await this.hv.macs();
      this.macs.clear();
      for (const m of now) this.macs.add(m);
    } catch (err) {
      this.o.log.warn({ err: causeText(err) }, 'could not list libvirt MACs');
    }
  }

  /**
   * Reads every domain of this prefix: a record whose domain exists takes its
   * state (adopted); a record without one is 'missing'. Domains without
   * berth's tag, or with another prefix, are never touched.
   */
  async resync(): Promise<void> {
    const hv = this.hv;
    if (!hv || !this.sink) return;
    await this.refreshMacs();
    const domains = await hv.list({ prefix: this.o.names.prefix });
    const byId = new Map(domains.map((d) => [d.owner?.instanceId, d]));
    for (const rec of this.sink.all()) {
      if (rec.runtime !== 'libvirt' || rec.state === 'creating' || rec.state === 'deleting') continue;
      const dom = byId.get(rec.id);
      const next = dom ? stateOfDomain(dom.state) : 'missing';
      if (next && next !== rec.state) {
        this.o.log.info(
          { instance: rec.id, name: rec.name, from: rec.state, to: next },
          'instance state from libvirt',
        );
        await this.sink.setState(rec.id, next);
      }
    }
    const known = new Set(this.sink.all().map((r) => r.id));
    const orphans = new Set<string>();
    for (const d of domains) {
      if (!d.owner || known.has(d.owner.instanceId)) continue;
      orphans.add(d.name);
      // Once per domain, not every resync: it stays in `berthctl status` until someone acts.
      if (!this.orphanDomains.has(d.name))
        this.o.log.warn(
          { domain: d.name, instance: d.owner.instanceId },
          'domain carries our tag but has no record; left alone (see orphan_domains in berthctl status)',
        );
    }
    this.orphanDomains = orphans;
  }

  /** Domains with berth's tag and prefix but no record (a restored store, a hand-made copy). */
  orphans(): string[] {
    return [...this.orphanDomains].sort();
  }

  /** Before anything is allocated: libvirt answers and the image matches its hash. */
  async prepare(input: InstanceCreate): Promise<{ image: VerifiedImage; name: string }> {
    if (!input.image)
      throw couldNot(
        'BERTH_ERR_INVALID_ARGUMENT',
        'create',
        'instance',
        input.name,
        'the libvirt runtime needs --image',
        {
          field: 'image',
        },
      );
    try {
      // A connection made before libvirtd went away still looks fine: ask libvirtd
      // itself (one lookup, about 1 ms) before a MAC or an IP is taken.
      const hv = await this.hypervisor();
      await hv.state(this.domainName(input));
    } catch (err) {
      const why =
        err instanceof BerthError
          ? err.message
          : `libvirt does not answer (${causeText(err)}); ${HOW_TO_START}`;
      throw new BerthError('BERTH_ERR_HOST_OP', `could not create instance "${input.name}": ${why}`, {
        cause: err,
      });
    }
    const rec = await this.o.images.get(input.image);
    return {
      image: await this.o.images.verify(rec.sha256, { verb: 'create', instance: input.name }),
      name: rec.name,
    };
  }

  /** Overlay, domain, start; each step registers its undo on the reverter. */
  async instantiate(
    rec: Instance,
    image: VerifiedImage,
    nic: { bridge: string; mtu: number },
    reverter: Reverter,
  ): Promise<void> {
    const hv = await this.hypervisor();
    this.virt ??= await (this.o.virtType ?? (() => detectVirtType()))();
    const dir = this.instanceDir(rec.id);
    await mkdir(dir, { recursive: true });
    reverter.add(`instance dir ${dir}`, () => rm(dir, { recursive: true, force: true }));
    let disk: string | undefined;
    if (image.kind === 'disk') {
      disk = join(dir, 'disk.qcow2');
      await createOverlay({ path: image.disk, format: image.format }, disk, this.runner);
    }
    const name = this.domainName(rec);
    const n = rec.nics[0] as Instance['nics'][number];
    const xml = domainXml({
      name,
      uuid: rec.uuid,
      virtType: this.virt.type,
      vcpus: rec.vcpus ?? 1,
      memoryMiB: rec.memory_mib ?? 256,
      boot: bootOf(image, disk),
      nics: [{ mac: n.mac, bridge: nic.bridge, port: n.port, mtu: nic.mtu }],
      serialLog: this.consoleLog(rec.id),
      smbios: { kind: 'nocloud' },
      owner: { instanceId: rec.id, hostId: this.o.hostId(), prefix: this.o.names.prefix },
    });
    await hv.define(xml);
    reverter.add(`domain ${name}`, () => hv.undefine(name));
    await hv.start(name);
    reverter.add(`running domain ${name}`, () => hv.destroy(name));
  }

  /** destroy → undefine → instance dir (overlay, serial log). */
  async teardown(rec: Instance): Promise<void> {
    const hv = await this.hypervisor();
    const name = this.domainName(rec);
    await hv.destroy(name);
    await hv.undefine(name);
    await rm(this.instanceDir(rec.id), { recursive: true, force: true });
  }

  async startInstance(rec: Instance): Promise<void> {
    if (rec.image_sha256) await this.o.images.verify(rec.image_sha256, { verb: 'start', instance: rec.name });
    const hv = await this.hypervisor();
    if ((await hv.state(this.domainName(rec))) === 'running') return;
    await hv.start(this.domainName(rec));
  }

  /** ACPI first; the plug after timeoutMs. */
  async stopInstance(rec: Instance, timeoutMs: number): Promise<'shutdown' | 'destroyed'> {
    const hv = await this.hypervisor();
    const name = this.domainName(rec);
    const running = async () => stateOfDomain((await hv.state(name)) ?? 'shutoff') === 'running';
    if (!(await running())) return 'shutdown';
    await hv.shutdown(name).catch(() => undefined);
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (!(await running())) return 'shutdown';
      await new Promise((r) => setTimeout(r, 200));
    }
    await hv.destroy(name);
    return 'destroyed';
  }

  async rebootInstance(rec: Instance): Promise<void> {
    const hv = await this.hypervisor();
    const name = this.domainName(rec);
    if ((await hv.state(name)) !== 'running') return this.startInstance(rec);
    await hv.reboot(name);
  }

  async close(): Promise<void> {
    this.closed = true;
    const hv = this.hv;
    this.hv = undefined;
    await hv?.close();
  }
}
