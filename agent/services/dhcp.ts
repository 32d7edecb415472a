// The DHCP service: every datagram an endpoint hears lands in handle(). A
// packet is answered only when its chaddr is a MAC berth assigned to a port
// of this network and the bridge shows that MAC on that very port; then the
// pure state machine (hostnet/dhcp/server.ts) decides, the lease is stored,
// and the reply goes back through the endpoint's :67 socket. Everything else
// is dropped and audited, at a bounded rate, so a flood of made-up MACs costs
// one map lookup each and no store writes beyond the audit throttle.
import type { Logger } from 'pino';
import type { Store } from '../../base/store.js';
import { serviceAddress } from '../../hostnet/alloc/ipam.js';
import {
  BOOTREQUEST,
  type DhcpPacket,
  decode,
  encodeReply,
  messageTypeName,
  RejectionCounter,
} from '../../hostnet/dhcp/codec.js';
import { isClientMessage } from '../../hostnet/dhcp/options.js';
import {
  type Binding,
  decide,
  type Lease,
  leaseStatus,
  REFUSED_REASONS,
  type ServedNetwork,
} from '../../hostnet/dhcp/server.js';
import { AuditThrottle, PortRateLimiter } from '../../hostnet/dhcp/server-limits.js';
import type { ResolveResult } from '../../hostnet/observe/resolve.js';
import type { AuditInput } from '../audit/audit-log.js';
import type { NetworkRecord } from './networks.js';

export const LEASE_PREFIX = 'lease/';

export function leaseKey(network: string, mac: string): string {
  return `${LEASE_PREFIX}${network}/${mac}`;
}

export type SendReply = (data: Buffer, address: string, port: number) => void;

export interface DhcpServiceOptions {
  store: Store;
  audit: { append(input: AuditInput): Promise<unknown> };
  observer: {
    resolveMac(network: string, mac: string): Promise<ResolveResult>;
    resolveMacNow(network: string, mac: string): ResolveResult;
  };
  /** The port directory: who berth assigned a MAC to. */
  ports: {
    portByMac(mac: string): { network: string; instance: string; ip?: string; ifname: string } | undefined;
  };
  networks: { get(name: string): NetworkRecord };
  instanceName(id: string): string | undefined;
  log: Logger;
  leaseSeconds?: number;
  declineHoldSeconds?: number;
  /** Per observed port: packets per second and burst. */
  rate?: { rate: number; burst: number };
  /** Refusal records written one by one per port per second, and over all ports. */
  auditPerPort?: number;
  auditTotal?: number;
  now?: () => number;
}

export interface LeaseView extends Omit<Lease, 'state'> {
  instance_name?: string;
  state: Lease['state'] | 'expired';
}

export interface DhcpStats {
  rejected: Record<string, number>;
  refused: Record<string, number>;
  replies: Record<string, number>;
  /** Client messages by "type verdict": verdict is offer, ack, nak, accepted, ignored or refused. */
  messages: Record<string, number>;
  suppressedAudits: number;
}

const bump = (m: Record<string, number>, k: string) => {
  m[k] = (m[k] ?? 0) + 1;
};

export class DhcpService {
  private readonly rejections = new RejectionCounter();
  private readonly refused: Record<string, number> = {};
  private readonly replies: Record<string, number> = {};
  private readonly messages: Record<string, number> = {};
  private suppressedAudits = 0;
  private readonly limiter: PortRateLimiter;
  private readonly throttle: AuditThrottle;
  private readonly served = new WeakMap<NetworkRecord, ServedNetwork>();
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: DhcpServiceOptions) {
    this.now = o.now ?? Date.now;
    this.limiter = new PortRateLimiter(o.rate ?? { rate: 10, burst: 20 });
    this.throttle = new AuditThrottle({ perKey: o.auditPerPort ?? 5, total: o.auditTotal ?? 100 });
    this.timer = setInterval(() => void this.flushAudit(), 1000);
    this.timer.unref();
  }

  /** The endpoint route: never throws, never rejects. */
  readonly handle = (
    network: string,
    data: Buffer,
    address: string,
    port: number,
    reply: SendReply,
  ): Promise<void> =>
    this.process(network, data, address, reply).catch((err: unknown) => {
      this.o.log.error({ network, err: String(err), from: `${address}:${port}` }, 'DHCP packet failed');
    });

  private async process(network: string, data: Buffer, from: string, reply: SendReply): Promise<void> {
    const result = decode(data);
    if (!this.rejections.record(result)) return;
    // giaddr is ignored: every guest berth answers is on a local port, so the
    // reply goes to it as to a local client, never toward a relay address.
    const packet =
      result.packet.giaddr === '0.0.0.0' ? result.packet : { ...result.packet, giaddr: '0.0.0.0' };
    if (packet.op !== BOOTREQUEST || !isClientMessage(packet.messageType) || packet.hlen !== 6) {
      bump(this.refused, 'not-a-client-request');
      bump(this.messages, `${(messageTypeName(packet.messageType) ?? 'unknown').toLowerCase()} refused`);
      return;
    }
    const mac = packet.chaddr;
    const owner = this.o.ports.portByMac(mac);
    if (!owner || owner.network !== network) {
      // The cheap path for made-up MACs: no waiting, no store access.
      const seen = this.observedPort(network, mac);
      return this.refuse(network, packet, from, owner ? 'mac-on-other-network' : 'mac-not-assigned', seen);
    }
    const who = await this.o.observer.resolveMac(network, mac);
    if (!who.ok) return this.refuse(network, packet, from, who.reason, who.port, owner.instance);
    if (!this.limiter.take(who.port, this.now()))
      return this.refuse(network, packet, from, 'rate-limited', who.port, who.instance);

    const net = this.servedNetwork(network);
    const binding: Binding = {
      mac,
      ip: owner.ip as string,
      instance: who.instance,
      hostname: this.o.instanceName(who.instance),
    };
    const key = leaseKey(network, mac);
    const lease = await this.o.store.get<Lease>(key);
    const decision = decide({ packet, source: from, binding, network: net, lease, now: this.now() });
    const type = messageTypeName(packet.messageType).toLowerCase();
    // Not fsynced: the address comes from the instance record, not the lease, so
    // a lease lost to a power cut costs nothing (the next REQUEST is ACKed the
    // same). A boot storm then does not queue one disk flush per ACK. For the
    // same reason a lease that cannot be written (a full disk) is still answered:
    // a running guest must keep its address.
    if (decision.lease)
      await this.o.store
        .batch([{ type: 'put', key, value: decision.lease }], { durable: false })
        .catch((err: unknown) =>
          this.o.log.warn({ network, mac, err: String(err) }, 'could not record the lease; answering anyway'),
        );
    if (decision.lease?.state === 'declined') {
      this.audit(network, who.port, {
        event: `dhcp.${type}`,
        outcome: 'info',
        reason: `guest reports ${binding.ip} in use by another host; not offered again until ${decision.lease.expires}`,
        mac,
        port: who.port,
        network,
        instance: who.instance,
        ip: binding.ip,
      });
    }
    if (!decision.reply && decision.reason !== undefined && REFUSED_REASONS.has(decision.reason)) {
      // A DECLINE or RELEASE in this instance's name that does not hold together: nothing changed.
      return this.refuse(network, packet, from, decision.reason, who.port, who.instance, {
        ciaddr: packet.ciaddr,
        ...(packet.options.requestedIp !== undefined ? { requested: packet.options.requestedIp } : {}),
        assigned: binding.ip,
      });
    }
    if (!decision.reply) {
      if (decision.reason) bump(this.refused, decision.reason);
      bump(this.messages, `${type} ${decision.reason ? 'ignored' : 'accepted'}`);
      return;
    }
    const { spec, to } = decision.reply;
    if (spec.type === 'NAK') {
      this.audit(network, who.port, {
        event: `dhcp.${type}`,
        outcome: 'refused',
        reason: `NAK: ${decision.reason}`,
        mac,
        port: who.port,
        network,
        instance: who.instance,
        ...(from !== '0.0.0.0' ? { ip: from } : {}),
      });
    }
    const encoded = encodeReply(spec, { maxSize: net.mtu });
    bump(this.replies, spec.type);
    bump(this.messages, `${type} ${spec.type.toLowerCase()}`);
    reply(encoded.buffer, to.address, to.port);
    this.o.log.debug(
      { network, mac, instance: who.instance, ip: binding.ip, type: spec.type, to: to.address },
      'DHCP reply',
    );
  }

  private observedPort(network: string, mac: string): string | undefined {
    try {
      return this.o.observer.resolveMacNow(network, mac).port;
    } catch {
      return undefined;
    }
  }

  private refuse(
    network: string,
    packet: DhcpPacket,
    from: string,
    reason: string,
    port: string | undefined,
    instance?: string,
    detail: Record<string, unknown> = {},
  ): void {
    bump(this.refused, reason);
    bump(this.messages, `${messageTypeName(packet.messageType).toLowerCase()} refused`);
    this.audit(network, port, {
      event: `dhcp.${messageTypeName(packet.messageType).toLowerCase()}`,
      outcome: 'refused',
      reason,
      mac: packet.chaddr,
      ...(port ? { port } : {}),
      network,
      ...(instance ? { instance } : {}),
      ...(from !== '0.0.0.0' ? { ip: from } : {}),
      detail: { xid: packet.xid, ...detail },
    });
  }

  private audit(network: string, port: string | undefined, input: AuditInput): void {
    const key = `${network}/${port ?? 'unknown-port'}`;
    if (!this.throttle.admit(key, input.reason, this.now())) {
      this.suppressedAudits += 1;
      return;
    }
    this.o.audit
      .append(input)
      .catch((err: unknown) => this.o.log.error({ err: String(err) }, 'could not append audit record'));
  }

  /** One summary record per port whose refusals were only counted in the last second. */
  async flushAudit(): Promise<void> {
    for (const s of this.throttle.flush()) {
      const [network, port] = s.key.split('/') as [string, string];
      await this.o.audit
        .append({
          event: 'dhcp.suppressed',
          outcome: 'refused',
          reason: `${s.count} more DHCP messages refused on this port and not recorded one by one`,
          network,
          ...(port === 'unknown-port' ? {} : { port }),
          detail: { count: s.count, reasons: s.reasons, since: new Date(s.windowStart).toISOString() },
        })
        .catch((err: unknown) => this.o.log.error({ err: String(err) }, 'could not append audit record'));
    }
  }

  private servedNetwork(name: string): ServedNetwork {
    const rec = this.o.networks.get(name);
    let net = this.served.get(rec);
    if (!net) {
      net = {
        name: rec.name,
        subnet: rec.subnet,
        gateway: rec.gateway,
        dns: rec.dns,
        domain: rec.domain,
        mtu: rec.mtu,
        serverId: serviceAddress(rec),
        leaseSeconds: this.o.leaseSeconds ?? 3600,
        declineHoldSeconds: this.o.declineHoldSeconds ?? 60,
      };
      this.served.set(rec, net);
    }
    return net;
  }

  async list(network?: string): Promise<LeaseView[]> {
    const prefix = network === undefined ? LEASE_PREFIX : `${LEASE_PREFIX}${network}/`;
    const now = this.now();
    return (await this.o.store.list<Lease>(prefix)).map(({ value }) => {
      const name = this.o.instanceName(value.instance);
      return { ...value, ...(name ? { instance_name: name } : {}), state: leaseStatus(value, now) };
    });
  }

  stats(): DhcpStats {
    return {
      rejected: this.rejections.snapshot(),
      refused: { ...this.refused },
      replies: { ...this.replies },
      messages: { ...this.messages },
      suppressedAudits: this.suppressedAudits,
    };
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flushAudit();
  }
}
