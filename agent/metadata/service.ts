// berthd's side of the metadata service. An endpoint asks once per caller IP:
// berthd resolves who that is (observed MAC and bridge port, never a header),
// gathers the instance's inputs, compiles the policies that name it, and hands
// the endpoint everything it needs to answer from its own memory until told
// to forget. Refusals the endpoint makes come back here for the audit log.
import type { Logger } from 'pino';
import type { Store } from '../../base/store.js';
import { AuditThrottle } from '../../hostnet/dhcp/server-limits.js';
import type { AuditInput, AuditLog } from '../audit/audit-log.js';
import { callerIdentity, compileRules, describeCaller, type Rule } from '../auth/policy.js';
import type { Observer } from '../daemon/services.js';
import { keySetText } from '../services/host-keys.js';
import type { InstanceService } from '../services/instances.js';
import type { NetworkService } from '../services/networks.js';
import type { NoticeService } from '../services/notices.js';
import type { PolicyService } from '../services/policies.js';
import { type InstanceDoc, identityDocument } from './doc.js';
import {
  type MetadataFields,
  PASSWORD_PREFIX,
  readBlob,
  USER_DATA_PREFIX,
  VENDOR_DATA_PREFIX,
} from './inputs.js';
import type { MetadataKeys } from './keys.js';
import { PASSWORD_MAX_BYTES } from './openstack.js';

/** What the endpoint gets for one caller IP. */
export type CallerBundle =
  | {
      ok: true;
      mac: string;
      port: string;
      instance: string;
      identity: string;
      doc: InstanceDoc;
      rules: Rule[];
      tokens: 'optional' | 'required';
      tokenKey: Buffer;
    }
  | { ok: false; reason: string };

export interface RefusalReport {
  ip: string;
  status: number;
  reason: string;
  path: string;
  mac?: string;
  port?: string;
  instance?: string;
  identity?: string;
  /** How many refused requests the record stands for (the endpoint's rate limit). */
  count?: number;
  /** When the endpoint refused; set on every report, and older than now for one queued while berthd was away. */
  time?: string;
}

/** What an endpoint hands the next berthd: refusals it made alone while none was connected. */
export interface QueuedRefusals {
  refusals: RefusalReport[];
  /** Refusals past the endpoint's queue bound: only counted. */
  dropped?: { count: number; since: string; until: string };
}

/** Queued refusals older than this are still written; a time in the future is not believed. */
const CLOCK_SLACK_MS = 5_000;

/** The endpoint's time for a refusal when it is a sane ISO time not in the future; else undefined (now). */
function reportedTime(time: unknown, now: number): string | undefined {
  if (typeof time !== 'string') return undefined;
  const at = Date.parse(time);
  if (!Number.isFinite(at) || at > now + CLOCK_SLACK_MS) return undefined;
  return new Date(at).toISOString();
}

export interface MetadataServiceOptions {
  store: Store;
  audit: AuditLog;
  observer: Pick<Observer, 'resolve' | 'resolveNow'>;
  instances: InstanceService;
  networks: NetworkService;
  policies: PolicyService;
  /** Maintenance notices (services/notices.ts); none are served without it. */
  notices?: Pick<NoticeService, 'viewFor'>;
  keys: MetadataKeys;
  hostId: () => string;
  /** The JWKS of every host key that verifies identity documents; this host's own key alone by default. */
  keySet?: () => string;
  log: Logger;
  /** Refusal records written one by one per port per second (default 10), and over all ports (200). */
  auditPerPort?: number;
  auditTotal?: number;
  now?: () => number;
}

type WithInputs = ReturnType<InstanceService['get']> & Partial<MetadataFields> & { image_sha256?: string };

export class MetadataService {
  /**
   * The signed identity document per instance, kept while its facts stay the
   * same: a guest fetches the document and its signature in two requests,
   * and an endpoint cache emptied between them (any create on the host does
   * that) must not hand it a signature of a newer document.
   */
  private readonly identities = new Map<string, { facts: string; document: string; signature: string }>();

  /** Answers by network and HTTP status, as the endpoints report them. */
  private readonly answered = new Map<string, Map<number, number>>();
  // A guest can send thousands of refused requests a second (a foreign Host
  // header costs it nothing); one record each would let it fill the disk and
  // drown everyone else's records. As for DHCP: a few per port per second,
  // the rest folded into one metadata.suppressed summary per port.
  private readonly throttle: AuditThrottle;
  private readonly now: () => number;

  constructor(private readonly o: MetadataServiceOptions) {
    this.now = o.now ?? Date.now;
    this.throttle = new AuditThrottle({ perKey: o.auditPerPort ?? 10, total: o.auditTotal ?? 200 });
    setInterval(() => void this.flushAudit(), 1000).unref();
  }

  async lookup(network: string, ip: string, path = ''): Promise<CallerBundle> {
    const who = await this.o.observer.resolve(network, ip);
    if (!who.ok) {
      await this.audit({
        event: 'metadata.request',
        outcome: 'refused',
        reason: who.reason,
        network,
        ip,
        ...(who.mac ? { mac: who.mac } : {}),
        ...(who.port ? { port: who.port } : {}),
        ...(path ? { path } : {}),
        // Whose address the caller used: the refusal was made in that instance's name.
        ...(who.instance ? { detail: { ip_assigned_to: who.instance } } : {}),
      });
      return { ok: false, reason: who.reason };
    }
    let rec: WithInputs;
    try {
      rec = this.o.instances.get(who.instance) as WithInputs;
    } catch {
      // Deleted between the port lookup and now.
      return { ok: false, reason: 'instance-gone' };
    }
    const nic = rec.nics.find((n) => n.mac === who.mac) ?? rec.nics[0];
    const net = this.o.networks.get(network);
    const caller = callerIdentity(rec, who.mac);
    const [userData, vendorData, password] = await Promise.all([
      readBlob(this.o.store, USER_DATA_PREFIX, rec.id),
      readBlob(this.o.store, VENDOR_DATA_PREFIX, rec.id),
      this.o.store.get<string>(`${PASSWORD_PREFIX}${rec.id}`),
    ]);
    const base: Omit<InstanceDoc, 'identity'> = {
      id: rec.id,
      uuid: rec.uuid,
      name: rec.name,
      hostname: rec.name,
      runtime: rec.runtime,
      network: {
        name: net.name,
        subnet: net.subnet,
        mtu: net.mtu,
        dns: net.dns,
        ...(net.gateway ? { gateway: net.gateway } : {}),
        ...(net.domain ? { domain: net.domain } : {}),
      },
      mac: who.mac,
      ip: nic?.ip ?? ip,
      port: who.port,
      sshKeys: rec.ssh_keys ?? [],
      meta: rec.meta ?? {},
      hostId: this.o.hostId(),
      createdAt: rec.created_at,
      keySet:
        this.o.keySet?.() ?? keySetText([{ host: this.o.hostId(), publicKeyPem: this.o.keys.publicKeyPem }]),
      ...(rec.role ? { role: rec.role } : {}),
      ...(rec.image_sha256 ? { imageSha256: rec.image_sha256 } : {}),
      ...(userData ? { userData } : {}),
      ...(vendorData ? { vendorData } : {}),
      ...(password !== undefined ? { password } : {}),
      events: this.o.notices?.viewFor(rec.id) ?? [],
    };
    const { document, signature } = this.signedIdentity(base);
    return {
      ok: true,
      mac: who.mac,
      port: who.port,
      instance: rec.id,
      identity: describeCaller(caller),
      doc: { ...base, identity: { document, signature } },
      rules: compileRules(this.o.policies.all(), caller),
      tokens: rec.tokens ?? 'optional',
      tokenKey: this.o.keys.tokenKey,
    };
  }

  private signedIdentity(base: Omit<InstanceDoc, 'identity'>): { document: string; signature: string } {
    const facts = identityDocument(base, new Date(0));
    const kept = this.identities.get(base.id);
    if (kept?.facts === facts) return kept;
    // Deleted instances' entries go in bulk; each is rebuilt on its next lookup.
    if (this.identities.size >= 10_000) this.identities.clear();
    const document = identityDocument(base);
    const fresh = { facts, document, signature: this.o.keys.sign(document) };
    this.identities.set(base.id, fresh);
    return fresh;
  }

  async refused(network: string, r: RefusalReport): Promise<void> {
    // Refused before any lookup (the rate limit): name the guest from what the
    // host sees at that address now, so the record says to whom it happened.
    if (r.port === undefined) {
      try {
        const who = this.o.observer.resolveNow(network, r.ip);
        if (who.ok) r = { ...r, mac: who.mac, port: who.port, instance: who.instance };
      } catch {
        // The network is gone: the record keeps the address alone.
      }
    }
    const count = Number.isSafeInteger(r.count) && (r.count as number) > 0 ? r.count : undefined;
    // A rate-limit record already stands for a second of one caller's
    // refusals; throttled again here it would be counted as one.
    const append =
      count === undefined
        ? (i: AuditInput & { network: string }) => this.audit(i)
        : (i: AuditInput) => this.o.audit.append(i).then(() => undefined);
    // Written with the time the endpoint refused; one that waited for this berthd says so.
    const time = reportedTime(r.time, this.now());
    const late = time !== undefined && Date.parse(time) < this.now() - 1000;
    await append({
      event: 'metadata.request',
      outcome: 'refused',
      reason: r.reason,
      network,
      ip: r.ip,
      path: r.path,
      ...(time ? { time } : {}),
      ...(r.mac ? { mac: r.mac } : {}),
      ...(r.port ? { port: r.port } : {}),
      ...(r.instance ? { instance: r.instance } : {}),
      ...(r.identity ? { identity: r.identity } : {}),
      detail: {
        status: r.status,
        ...(count !== undefined ? { count } : {}),
        ...(late ? { queued: true } : {}),
      },
    });
  }

  /**
   * Refusals an endpoint made while no berthd was connected, oldest first,
   * each with its own time; those past its queue bound arrive as a count and
   * become one record.
   */
  async refusedQueued(network: string, q: QueuedRefusals): Promise<void> {
    for (const r of q.refusals ?? []) await this.refused(network, r);
    const d = q.dropped;
    if (!d || !(Number.isSafeInteger(d.count) && d.count > 0)) return;
    await this.o.audit.append({
      event: 'metadata.suppressed',
      outcome: 'refused',
      reason: `${d.count} metadata requests refused while berthd was away and not kept (the endpoint's queue was full)`,
      network,
      ...(reportedTime(d.since, this.now()) ? { time: reportedTime(d.since, this.now()) } : {}),
      detail: { count: d.count, since: d.since, until: d.until, queued: true },
    });
  }

  /** Appends a refusal unless its port is over its share this second; then it is only counted. */
  private async audit(input: AuditInput & { network: string }): Promise<void> {
    if (this.throttle.admit(`${input.network}/${input.port ?? ''}`, input.reason, this.now()))
      await this.o.audit.append(input);
  }

  /** One summary record per port whose refusals were only counted in the last second. */
  async flushAudit(): Promise<void> {
    for (const s of this.throttle.flush()) {
      const slash = s.key.indexOf('/');
      const port = s.key.slice(slash + 1);
      await this.o.audit
        .append({
          event: 'metadata.suppressed',
          outcome: 'refused',
          reason: `${s.count} more metadata requests refused from this port and not recorded one by one`,
          network: s.key.slice(0, slash),
          ...(port ? { port } : {}),
          detail: { count: s.count, reasons: s.reasons, since: new Date(s.windowStart).toISOString() },
        })
        .catch((err: unknown) => this.o.log.error({ err: String(err) }, 'could not append audit record'));
    }
  }

  /**
   * Nova's password protocol: one POST, then 409. The identity is resolved
   * again here, so a cached view in the endpoint cannot write for anyone else.
   */
  async setPassword(
    network: string,
    params: { ip: string; instance: string; value: string },
  ): Promise<{ status: number; message: string }> {
    const who = await this.o.observer.resolve(network, params.ip);
    if (!who.ok || who.instance !== params.instance) return { status: 403, message: 'caller changed; retry' };
    if (Buffer.byteLength(params.value) > PASSWORD_MAX_BYTES)
      return { status: 400, message: `password is longer than ${PASSWORD_MAX_BYTES} bytes` };
    const key = `${PASSWORD_PREFIX}${who.instance}`;
    try {
      await this.o.store.batch([{ type: 'put', key, value: params.value }], {
        guards: [{ key, absent: true }],
      });
    } catch {
      return { status: 409, message: 'the password is already set' };
    }
    this.o.log.info({ instance: who.instance, network }, 'metadata: instance posted its password');
    return { status: 200, message: 'ok' };
  }

  /** Adds an endpoint's answers by HTTP status to the running totals (metrics). */
  statuses(network: string, params: { statuses: Record<string, number> }): void {
    const byStatus = this.answered.get(network) ?? new Map<number, number>();
    this.answered.set(network, byStatus);
    for (const [status, n] of Object.entries(params.statuses ?? {})) {
      const code = Number(status);
      if (Number.isInteger(code) && Number.isFinite(n) && n > 0)
        byStatus.set(code, (byStatus.get(code) ?? 0) + n);
    }
  }

  /** Metadata answers since berthd started, by network and HTTP status. */
  answers(): { network: string; status: number; count: number }[] {
    return [...this.answered].flatMap(([network, m]) =>
      [...m].map(([status, count]) => ({ network, status, count })),
    );
  }

  decisions(network: string, params: { counts: Record<string, number> }): void {
    this.o.log.info({ network, decisions: params.counts }, 'metadata decisions (allowed)');
  }
}
