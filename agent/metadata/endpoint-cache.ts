// The endpoint's memory of its callers. The first request from an IP asks
// berthd (one IPC round trip) and renders the instance's trees; later
// requests are answered from here without leaving the process. berthd's
// `invalidate` notices (a neighbour or FDB change, an instance or policy
// change) drop entries; an epoch makes sure a lookup that was in flight
// during an invalidation is not stored. Entries also age out, as a backstop
// for an event the observer missed.

import { type Decision, evaluate, RESOURCES, type Resource, type Rule } from '../auth/policy.js';
import type { CallerView, Lookup, MetadataBackend, Refusal } from './http.js';
import { renderAll } from './render.js';
import type { CallerBundle } from './service.js';
import { TokenAuthority } from './tokens.js';

export type Call = <T>(method: string, params: unknown) => Promise<T>;

export const CACHE_MAX_AGE_MS = 30_000;

interface Entry {
  view: CallerView;
  at: number;
}

/**
 * Every decision this caller can need, made once: one per resource for
 * reading, plus writing the password. The trees are rendered with them, and
 * the HTTP layer finds each one in the map, so no request evaluates rules.
 */
export function decideAll(rules: readonly Rule[]): Map<string, Decision> {
  const decisions = new Map<string, Decision>();
  for (const r of RESOURCES) decisions.set(`read ${r}`, evaluate(rules, 'read', r));
  decisions.set('write password', evaluate(rules, 'write', 'password'));
  decisions.set('write events', evaluate(rules, 'write', 'events'));
  return decisions;
}

export function viewOf(network: string, ip: string, bundle: Extract<CallerBundle, { ok: true }>): CallerView {
  // Buffers cross the IPC channel as plain Uint8Arrays; make them Buffers again.
  const { userData, vendorData } = bundle.doc;
  const b = {
    ...bundle,
    doc: {
      ...bundle.doc,
      ...(userData ? { userData: Buffer.from(userData) } : {}),
      ...(vendorData ? { vendorData: Buffer.from(vendorData) } : {}),
    },
  };
  const decisions = decideAll(b.rules);
  const readable = new Set(RESOURCES.filter((r) => decisions.get(`read ${r}`)?.allowed));
  const may = (r: Resource) => readable.has(r);
  const resolved = { instance: b.instance, mac: b.mac, port: b.port, network, ip };
  return {
    network,
    ip,
    mac: b.mac,
    port: b.port,
    instance: b.instance,
    identity: b.identity,
    items: renderAll(b.doc, resolved, may),
    rules: b.rules,
    tokens: b.tokens,
    authority: new TokenAuthority(Buffer.from(b.tokenKey)),
    who: { network, instance: b.instance, mac: b.mac, port: b.port },
    decisions,
  };
}

export class EndpointCache implements MetadataBackend {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<Lookup>>();
  private epoch = 0;
  fills = 0;

  constructor(
    private readonly network: string,
    private readonly call: Call,
    private readonly now: () => number = Date.now,
    private readonly maxAgeMs = CACHE_MAX_AGE_MS,
  ) {}

  lookup(ip: string): Lookup | Promise<Lookup> {
    const hit = this.entries.get(ip);
    if (hit && this.now() - hit.at < this.maxAgeMs) return { ok: true, view: hit.view };
    const pending = this.inflight.get(ip);
    if (pending) return pending;
    const epoch = this.epoch;
    const p = this.call<CallerBundle>('metadata.lookup', { ip })
      .then((b): Lookup => {
        if (!b.ok) return { ok: false, reason: b.reason };
        const view = viewOf(this.network, ip, b);
        this.fills += 1;
        if (epoch === this.epoch) this.entries.set(ip, { view, at: this.now() });
        return { ok: true, view };
      })
      .finally(() => {
        if (this.inflight.get(ip) === p) this.inflight.delete(ip);
      });
    this.inflight.set(ip, p);
    return p;
  }

  /**
   * Drops the callers at ips and the callers resolved to macs (a MAC seen on
   * another port); with neither, every caller. The epoch also keeps any lookup
   * in flight from being stored, since it may have read the old state.
   */
  invalidate(ips?: string[], macs?: string[]): void {
    this.epoch += 1;
    if (!ips && !macs) {
      this.entries.clear();
      this.inflight.clear();
      return;
    }
    for (const ip of ips ?? []) {
      this.entries.delete(ip.replace(/^::ffff:/, ''));
      this.inflight.delete(ip);
    }
    if (macs?.length) {
      const gone = new Set(macs.map((m) => m.toLowerCase()));
      for (const [ip, e] of this.entries) if (gone.has(e.view.mac.toLowerCase())) this.entries.delete(ip);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  async refuse(r: Refusal): Promise<void> {
    await this.call('metadata.refused', {
      ip: r.ip,
      status: r.status,
      reason: r.reason,
      path: r.path,
      ...(r.count !== undefined ? { count: r.count } : {}),
      ...(r.view
        ? { mac: r.view.mac, port: r.view.port, instance: r.view.instance, identity: r.view.identity }
        : {}),
    });
  }

  async identityToken(
    view: CallerView,
    audience: string,
  ): Promise<{ status: number; message: string; token?: string }> {
    return this.call('metadata.identity-token', {
      ip: view.ip,
      instance: view.instance,
      mac: view.mac,
      audience,
    });
  }

  async ackEvent(view: CallerView, id: string): Promise<{ status: number; message: string }> {
    const r = await this.call<{ status: number; message: string }>('metadata.event-ack', {
      ip: view.ip,
      instance: view.instance,
      id,
    });
    // berthd told the endpoints to forget this guest already; this makes sure of it.
    if (r.status === 200) this.invalidate([view.ip]);
    return r;
  }

  async postPassword(view: CallerView, value: string): Promise<{ status: number; message: string }> {
    const r = await this.call<{ status: number; message: string }>('metadata.password', {
      ip: view.ip,
      instance: view.instance,
      value,
    });
    if (r.status === 200) this.invalidate([view.ip]);
    return r;
  }
}
