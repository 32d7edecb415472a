// Security groups: named sets of ACCEPT rules, kept under `secgroup/<name>`
// in the shared store (the cluster's in cluster mode: groups are
// cluster-scoped) and mirrored in memory, so the enforcement compiler reads
// them synchronously with all(). Every write is one guarded batch: a create
// reserves the name, a rule change lands only on the record it read, so two
// hosts changing one group never lose each other's rule.
import { EventEmitter } from 'node:events';
import { BerthError, couldNot } from '../../base/errors.js';
import type { Store } from '../../base/store.js';
import type { SecGroup, SecGroupCreate, SecGroupRule, SecGroupRuleAdd } from '../api/types.js';
import { canonicalRule } from './secgroup-rules.js';

export const SECGROUP_PREFIX = 'secgroup/';
/** Rule changes retried after another writer changed the same group in between. */
const WRITE_TRIES = 5;

export interface SecGroupServiceOptions {
  /** This host's store, or in cluster mode the cluster's. */
  store: Store;
  /** Names of the instances in a group, every host's in cluster mode (a group in use is not deleted). */
  membersOf: (group: string) => string[];
  /** Refuses a change while etcd is away (cluster mode). */
  requireConnected?: (verb: string, object: string) => void;
  now?: () => Date;
}

/** What changed, for the listeners (the enforcement compiler recompiles on any of them). */
export type SecGroupChange =
  | { kind: 'created' | 'deleted'; group: string }
  | { kind: 'rule-added' | 'rule-deleted'; group: string; rule: SecGroupRule }
  | { kind: 'reloaded' };

export class SecGroupService {
  private readonly groups = new Map<string, SecGroup>();
  private readonly events = new EventEmitter();

  constructor(private readonly opts: SecGroupServiceOptions) {}

  async load(): Promise<void> {
    for (const { value } of await this.opts.store.list<SecGroup>(SECGROUP_PREFIX))
      this.groups.set(value.name, value);
  }

  /** Cluster mode: takes the groups as the cluster has them now (after a watch event). */
  async reload(): Promise<void> {
    const next = await this.opts.store.list<SecGroup>(SECGROUP_PREFIX);
    this.groups.clear();
    for (const { value } of next) this.groups.set(value.name, value);
    this.emit({ kind: 'reloaded' });
  }

  all(): SecGroup[] {
    return [...this.groups.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  has(name: string): boolean {
    return this.groups.has(name);
  }

  get(name: string): SecGroup {
    const g = this.groups.get(name);
    if (!g) throw new BerthError('BERTH_ERR_NOT_FOUND', `could not find secgroup "${name}": no such group`);
    return g;
  }

  /** Creates a group; the same create again returns the group, a different one is refused. */
  async create(input: SecGroupCreate): Promise<SecGroup> {
    const join = input.join_gids ? [...new Set(input.join_gids)].sort((a, b) => a - b) : undefined;
    const existing = this.groups.get(input.name) ?? (await this.read(input.name));
    if (existing) {
      if (sameHeader(existing, input.description, join)) return existing;
      throw couldNot(
        'BERTH_ERR_ALREADY_EXISTS',
        'create',
        'secgroup',
        input.name,
        'a group with that name exists with another description or join_gids',
        { field: 'name' },
      );
    }
    this.opts.requireConnected?.('create', `secgroup "${input.name}"`);
    const at = this.now();
    const rec: SecGroup = {
      name: input.name,
      ...(input.description ? { description: input.description } : {}),
      ...(join && join.length > 0 ? { join_gids: join } : {}),
      rules: [],
      created_at: at,
      updated_at: at,
    };
    const key = `${SECGROUP_PREFIX}${rec.name}`;
    try {
      await this.opts.store.batch([{ type: 'put', key, value: rec }], { guards: [{ key, absent: true }] });
    } catch (err) {
      // Another writer created it first: identical is still idempotent.
      const won = await this.read(rec.name);
      if (won && sameHeader(won, input.description, join)) return this.remember(won);
      throw err instanceof BerthError ? couldNot(err.code, 'create', 'secgroup', rec.name, err) : err;
    }
    this.remember(rec);
    this.emit({ kind: 'created', group: rec.name });
    return rec;
  }

  /** Refused while any instance is in the group or another group's rule names it. */
  async delete(name: string): Promise<void> {
    const g = await this.fresh(name);
    const members = this.opts.membersOf(name);
    if (members.length > 0)
      throw couldNot(
        'BERTH_ERR_CONFLICT',
        'delete',
        'secgroup',
        name,
        `instances are in it (${members.slice(0, 5).join(', ')}${members.length > 5 ? ', …' : ''}); take them out with \`berthctl instance update NAME --secgroup …\` first`,
      );
    const users = this.referencedBy(name);
    if (users.length > 0)
      throw couldNot(
        'BERTH_ERR_CONFLICT',
        'delete',
        'secgroup',
        name,
        `rules of other groups admit it as a source (${users.join(', ')}); delete those rules first`,
      );
    this.opts.requireConnected?.('delete', `secgroup "${name}"`);
    const key = `${SECGROUP_PREFIX}${name}`;
    await this.opts.store.batch([{ type: 'del', key }], { guards: [{ key, equals: g }] }).catch((err) => {
      throw err instanceof BerthError ? couldNot(err.code, 'delete', 'secgroup', name, err) : err;
    });
    this.groups.delete(name);
    this.emit({ kind: 'deleted', group: name });
  }

  /** `group:rule-id` of every other group's rule whose source is this group. */
  referencedBy(name: string): string[] {
    return this.all()
      .filter((g) => g.name !== name)
      .flatMap((g) => g.rules.filter((r) => r.from === `group:${name}`).map((r) => `${g.name}:${r.id}`));
  }

  /** Adds a rule; the same rule again returns it (same id) and writes nothing. */
  async addRule(name: string, input: SecGroupRuleAdd): Promise<SecGroupRule> {
    const rule = canonicalRule(input, { groupExists: (g) => this.groups.has(g) });
    return this.modify(name, 'add a rule to', (g) => {
      const same = g.rules.find((r) => r.id === rule.id);
      if (same) {
        if (same.from !== rule.from || same.proto !== rule.proto)
          throw couldNot(
            'BERTH_ERR_CONFLICT',
            'add a rule to',
            'secgroup',
            name,
            `rule id ${rule.id} is taken`,
          );
        return { result: same };
      }
      return { next: { ...g, rules: [...g.rules, rule] }, result: rule, change: 'rule-added' };
    });
  }

  async deleteRule(name: string, id: string): Promise<SecGroupRule> {
    return this.modify(name, 'delete a rule of', (g) => {
      const rule = g.rules.find((r) => r.id === id);
      if (!rule)
        throw new BerthError(
          'BERTH_ERR_NOT_FOUND',
          `could not find rule "${id}" in secgroup "${name}": no such rule (see \`berthctl secgroup show ${name}\`)`,
          { field: 'rule' },
        );
      return {
        next: { ...g, rules: g.rules.filter((r) => r.id !== id) },
        result: rule,
        change: 'rule-deleted',
      };
    });
  }

  onChange(fn: (change: SecGroupChange) => void): () => void {
    this.events.on('change', fn);
    return () => this.events.off('change', fn);
  }

  /** Read, change, write guarded on what was read; again if another writer got between. */
  private async modify(
    name: string,
    verb: string,
    step: (g: SecGroup) => {
      next?: SecGroup;
      result: SecGroupRule;
      change?: 'rule-added' | 'rule-deleted';
    },
  ): Promise<SecGroupRule> {
    const key = `${SECGROUP_PREFIX}${name}`;
    for (let attempt = 1; ; attempt++) {
      const g = await this.fresh(name);
      const { next, result, change } = step(g);
      if (!next || !change) return result;
      this.opts.requireConnected?.(verb, `secgroup "${name}"`);
      const rec = { ...next, updated_at: this.now() };
      try {
        await this.opts.store.batch([{ type: 'put', key, value: rec }], { guards: [{ key, equals: g }] });
      } catch (err) {
        const raced = err instanceof BerthError && err.code === 'BERTH_ERR_CONFLICT';
        if (raced && attempt < WRITE_TRIES) continue;
        throw err instanceof BerthError ? couldNot(err.code, verb, 'secgroup', name, err) : err;
      }
      this.remember(rec);
      this.emit({ kind: change, group: name, rule: result });
      return result;
    }
  }

  /** The stored record (it may be newer than the cache in cluster mode); not found is an error. */
  private async fresh(name: string): Promise<SecGroup> {
    const g = await this.read(name);
    if (!g) {
      this.groups.delete(name);
      return this.get(name);
    }
    return this.remember(g);
  }

  private read(name: string): Promise<SecGroup | undefined> {
    return this.opts.store.get<SecGroup>(`${SECGROUP_PREFIX}${name}`);
  }

  private remember(g: SecGroup): SecGroup {
    this.groups.set(g.name, g);
    return g;
  }

  private emit(change: SecGroupChange): void {
    this.events.emit('change', change);
  }

  private now(): string {
    return (this.opts.now?.() ?? new Date()).toISOString();
  }
}

function sameHeader(g: SecGroup, description: string | undefined, join: number[] | undefined): boolean {
  const a = (g.join_gids ?? []).join(',');
  const b = (join ?? []).join(',');
  return (g.description ?? '') === (description ?? '') && a === b;
}
