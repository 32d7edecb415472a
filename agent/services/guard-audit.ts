// Turns the guard's drops (hostnet/guard/drop-log.ts) into audit records:
// event `guard.drop`, outcome refused, with the port the frame came in on,
// that port's class, the instance behind a guest port, and what the frame
// claimed (source MAC, IP, ARP sender, DHCP chaddr).
//
// At most one record per port and reason per second: the first drop is
// written at once, later ones in that second are folded into one record at
// its end, whose detail.count says how many drops it stands for. The kernel
// already logs at most 10 frames/s per port and reason, so count is of logged
// drops; the exact number of dropped frames is in the guard's named counters
// (`network show`, `berth_guard_dropped_packets_total`).
import type { GuardDropEvent } from '../../hostnet/guard/drop-log.js';
import type { AuditInput } from '../audit/audit-log.js';

export type PortClass = 'guest' | 'endpoint' | 'uplink' | 'foreign';

export interface PortInfo {
  class: PortClass;
  network?: string;
  /** The instance whose port it is (guest ports only). */
  instance?: string;
}

export interface GuardAuditOptions {
  append(input: AuditInput): Promise<unknown>;
  classify(port: string): PortInfo;
  windowMs?: number;
  now?: () => number;
  onError?(err: unknown): void;
}

interface Window {
  timer: NodeJS.Timeout;
  /** Drops since the last record, and the latest of them. */
  folded: number;
  last: GuardDropEvent | undefined;
}

export class GuardDropAudit {
  private readonly windows = new Map<string, Window>();
  private readonly windowMs: number;

  constructor(private readonly o: GuardAuditOptions) {
    this.windowMs = o.windowMs ?? 1000;
  }

  /** One drop from the log. */
  readonly drop = (event: GuardDropEvent): void => {
    // A security-group drop folds per guarded port (its subject), not per sender.
    const key = `${event.subject ?? event.port}\u0000${event.reason}`;
    const open = this.windows.get(key);
    if (open) {
      open.folded += 1;
      open.last = event;
      return;
    }
    this.write(event, 1);
    this.openWindow(key);
  };

  /** Writes what is folded now and stops the timers (berthd stopping). */
  close(): void {
    for (const [key, w] of this.windows) {
      clearTimeout(w.timer);
      if (w.last && w.folded > 0) this.write(w.last, w.folded);
      this.windows.delete(key);
    }
  }

  private openWindow(key: string): void {
    const w: Window = {
      folded: 0,
      last: undefined,
      timer: setTimeout(() => {
        this.windows.delete(key);
        // Drops folded in this second become one record, and the next second starts folding anew.
        if (w.last && w.folded > 0) {
          this.write(w.last, w.folded);
          this.openWindow(key);
        }
      }, this.windowMs),
    };
    w.timer.unref();
    this.windows.set(key, w);
  }

  private write(e: GuardDropEvent, count: number): void {
    const record =
      e.reason === SECGROUP_REASON && e.subject
        ? secgroupDropRecord(e, this.o.classify(e.subject), this.o.classify(e.port), count)
        : guardDropRecord(e, this.o.classify(e.port), count);
    this.o.append(record).catch((err) => this.o.onError?.(err));
  }
}

/** The audit record of `count` drops like `e` on a port of this class. */
export function guardDropRecord(e: GuardDropEvent, info: PortInfo, count: number): AuditInput {
  const ip = e.ipSrc ?? e.arpSenderIp;
  return {
    event: 'guard.drop',
    outcome: 'refused',
    reason: e.reason,
    port: e.port,
    ...(e.srcMac ? { mac: e.srcMac } : {}),
    ...(ip ? { ip } : {}),
    ...(info.network ? { network: info.network } : {}),
    ...(info.instance ? { instance: info.instance } : {}),
    detail: {
      class: info.class,
      count,
      ...(e.dstMac ? { dst_mac: e.dstMac } : {}),
      ...(e.ethertype !== undefined ? { ethertype: `0x${e.ethertype.toString(16).padStart(4, '0')}` } : {}),
      ...(e.ipDst ? { ip_dst: e.ipDst } : {}),
      ...(e.arpSenderMac ? { arp_sender_mac: e.arpSenderMac } : {}),
      ...(e.arpSenderIp ? { arp_sender_ip: e.arpSenderIp } : {}),
      ...(e.arpTargetIp ? { arp_target_ip: e.arpTargetIp } : {}),
      ...(e.chaddr ? { chaddr: e.chaddr } : {}),
    },
  };
}

/** The reason security-group drops log under (hostnet/secgroups/render.ts LOG_REASON). */
export const SECGROUP_REASON = 'secgroup';
const PROTOS: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp' };

/**
 * The audit record of `count` frames a security group refused: event
 * `secgroup.drop`, naming the guarded port and its instance (`to`), where the
 * frame came from (`from`: the sender's port and instance, its MAC and IP) and
 * what it asked for (protocol, destination address and port).
 */
export function secgroupDropRecord(
  e: GuardDropEvent,
  to: PortInfo,
  from: PortInfo,
  count: number,
): AuditInput {
  const proto = e.ipProto === undefined ? undefined : (PROTOS[e.ipProto] ?? String(e.ipProto));
  return {
    event: 'secgroup.drop',
    outcome: 'refused',
    reason: SECGROUP_REASON,
    port: e.subject ?? e.port,
    ...(e.srcMac ? { mac: e.srcMac } : {}),
    ...(e.ipSrc ? { ip: e.ipSrc } : {}),
    ...(to.network ? { network: to.network } : {}),
    ...(to.instance ? { instance: to.instance } : {}),
    detail: {
      count,
      from_port: e.port,
      from_class: from.class,
      ...(from.instance ? { from_instance: from.instance } : {}),
      ...(e.ipDst ? { ip_dst: e.ipDst } : {}),
      ...(e.ethertype !== undefined ? { ethertype: `0x${e.ethertype.toString(16).padStart(4, '0')}` } : {}),
      ...(proto ? { proto } : {}),
      ...(e.dport !== undefined ? { dport: e.dport } : {}),
    },
  };
}

export interface PortDirectoryView {
  /** The guest port's owner, if the port is an instance's. */
  guest(ifname: string): { instance: string; network: string } | undefined;
  /** Every network with its endpoint veth and uplink-side links (configured uplink, VLAN subinterface, trunk). */
  networks(): { name: string; endpoint: string; uplinks: string[] }[];
}

/** guest, endpoint, uplink, or foreign: anything else on a berth bridge (plugged in by hand). */
export function classifyPort(ifname: string, view: PortDirectoryView): PortInfo {
  const guest = view.guest(ifname);
  if (guest) return { class: 'guest', network: guest.network, instance: guest.instance };
  for (const net of view.networks()) {
    if (net.endpoint === ifname) return { class: 'endpoint', network: net.name };
    if (net.uplinks.includes(ifname)) return { class: 'uplink', network: net.name };
  }
  return { class: 'foreign' };
}
