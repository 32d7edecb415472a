// Policies of the auth manager, kept in the store under `policy/<name>` and
// mirrored in memory; every change tells the listeners (the metadata caches).

import { BerthError } from '../../base/errors.js';
import type { Store } from '../../base/store.js';
import { type PolicyRecord, validatePolicy } from '../auth/policy.js';

export const POLICY_PREFIX = 'policy/';

export class PolicyService {
  private readonly records = new Map<string, PolicyRecord>();
  private readonly listeners = new Set<() => void>();

  /**
   * store: this host's store, or in cluster mode the cluster's (every host
   * enforces what any host set). requireConnected refuses a change while etcd is away.
   */
  constructor(
    private readonly store: Store,
    private readonly requireConnected?: (verb: string, object: string) => void,
  ) {}

  async load(): Promise<void> {
    for (const { value } of await this.store.list<PolicyRecord>(POLICY_PREFIX))
      this.records.set(value.name, value);
  }

  /** Cluster mode: takes the policies as the cluster has them now, and tells the listeners. */
  async reload(): Promise<void> {
    const next = await this.store.list<PolicyRecord>(POLICY_PREFIX);
    this.records.clear();
    for (const { value } of next) this.records.set(value.name, value);
    this.changed();
  }

  all(): PolicyRecord[] {
    return [...this.records.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): PolicyRecord {
    const p = this.records.get(name);
    if (!p) throw new BerthError('BERTH_ERR_NOT_FOUND', `could not find policy "${name}": no such policy`);
    return p;
  }

  /** Creates or replaces; returns the stored record. */
  async put(input: PolicyRecord): Promise<PolicyRecord> {
    const rec: PolicyRecord = {
      name: input.name,
      identities: [...input.identities],
      allow: [...(input.allow ?? [])],
      deny: [...(input.deny ?? [])],
      ...(input.description ? { description: input.description } : {}),
    };
    validatePolicy(rec);
    this.requireConnected?.('set', `policy "${rec.name}"`);
    await this.store.batch([{ type: 'put', key: `${POLICY_PREFIX}${rec.name}`, value: rec }]);
    this.records.set(rec.name, rec);
    this.changed();
    return rec;
  }

  async delete(name: string): Promise<void> {
    this.get(name);
    this.requireConnected?.('delete', `policy "${name}"`);
    await this.store.batch([{ type: 'del', key: `${POLICY_PREFIX}${name}` }]);
    this.records.delete(name);
    this.changed();
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }
}
