// Maintenance notices: one instance's (`instance notice NAME --maintenance AT`)
// and the host's drain (`host notice --drain AT`), which applies to every
// instance on this host, present and future, until cleared. Kept in this
// host's own store under `notice/<id>`: a notice is about this host's
// hardware or this host's instances (an instance lives on one host), so in
// cluster mode it is per host too and needs no etcd to be set or read.
// Every change tells the listeners, which make the endpoints forget the
// affected guests' cached answers, so a guest's next read shows it.
import { randomBytes } from 'node:crypto';
import { BerthError, couldNot, invalidField } from '../../base/errors.js';
import type { Store } from '../../base/store.js';
import { EVENT_CODES, EVENT_ID_RE, type EventCode, type EventView } from '../metadata/events.js';

export const NOTICE_PREFIX = 'notice/';
/** Notices one instance carries, its own and the host's together: bounds what each guest is sent. */
export const MAX_NOTICES = 16;
export const MAX_DESCRIPTION = 255;
/** A notice without an end lasts this long after it starts, as EC2's windows do. */
export const DEFAULT_WINDOW_MS = 2 * 3600_000;

/** Who acknowledged, as the host observed it (never from a header). */
export interface NoticeAck {
  at: string;
  ip: string;
  mac: string;
  port: string;
  identity: string;
}

export interface Notice {
  id: string;
  scope: 'instance' | 'host';
  /** The instance's id, for scope `instance`. */
  instance?: string;
  code: EventCode;
  description: string;
  not_before: string;
  not_after: string;
  created_at: string;
  /** By instance id: a drain is acknowledged by each guest on its own. */
  acks: Record<string, NoticeAck>;
}

export interface NoticeInput {
  at: string;
  until?: string;
  code?: string;
  description?: string;
}

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i;

/** An ISO 8601 time with a zone (a bare local time means different things on different hosts), in the future. */
export function parseFutureTime(field: string, text: unknown, now: number, after?: number): string {
  if (typeof text !== 'string' || !ISO_RE.test(text.trim()))
    throw invalidField(
      field,
      `"${String(text)}" is not an ISO 8601 time with a zone (e.g. 2030-01-02T03:04:05Z)`,
    );
  const at = Date.parse(text.trim());
  if (!Number.isFinite(at)) throw invalidField(field, `"${text}" is not a valid time`);
  if (at <= now) throw invalidField(field, `"${text}" is not in the future`);
  if (after !== undefined && at <= after) throw invalidField(field, `"${text}" must be after the start`);
  return new Date(at).toISOString();
}

/** Checks a notice's fields; each failure names its field (`at`, `until`, `code`, `description`). */
export function validateNotice(input: NoticeInput, now: number, defaultCode: EventCode) {
  const notBefore = parseFutureTime('at', input.at, now);
  const start = Date.parse(notBefore);
  const notAfter =
    input.until === undefined
      ? new Date(start + DEFAULT_WINDOW_MS).toISOString()
      : parseFutureTime('until', input.until, now, start);
  const code = input.code ?? defaultCode;
  if (!(EVENT_CODES as readonly string[]).includes(code))
    throw invalidField('code', `"${code}" is not one of ${EVENT_CODES.join(', ')}`);
  const description = input.description ?? '';
  // Shown to the guest verbatim and to people in tables: one printable line.
  if (
    description.length > MAX_DESCRIPTION ||
    [...description].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)
  )
    throw invalidField('description', `must be one printable line of at most ${MAX_DESCRIPTION} characters`);
  return { code: code as EventCode, description, not_before: notBefore, not_after: notAfter };
}

export type AckResult = { status: number; message: string; notice?: Notice };

export class NoticeService {
  private readonly notices = new Map<string, Notice>();
  private readonly listeners = new Set<(instance: string | undefined) => void>();
  /** Writes one at a time: an ack rewrites its record, and two must not lose one. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  async load(): Promise<void> {
    for (const { value } of await this.store.list<Notice>(NOTICE_PREFIX)) this.notices.set(value.id, value);
  }

  /** Told the instance id a change concerns, or undefined for a host-wide one. */
  onChange(fn: (instance: string | undefined) => void): void {
    this.listeners.add(fn);
  }

  /** The notices that apply to the instance: its own and the host's, by start time. */
  forInstance(instance: string): Notice[] {
    return [...this.notices.values()]
      .filter((n) => n.scope === 'host' || n.instance === instance)
      .sort((a, b) => a.not_before.localeCompare(b.not_before) || a.id.localeCompare(b.id));
  }

  hostNotices(): Notice[] {
    return this.forInstance('').filter((n) => n.scope === 'host');
  }

  /** What the guest is sent: the notices not yet over, with its own acknowledgement. */
  viewFor(instance: string): EventView[] {
    const now = this.now();
    return this.forInstance(instance)
      .filter((n) => Date.parse(n.not_after) > now)
      .map((n) => ({
        id: n.id,
        code: n.code,
        description: n.description,
        notBefore: n.not_before,
        notAfter: n.not_after,
        scope: n.scope,
        ...(n.acks[instance] ? { acknowledgedAt: n.acks[instance].at } : {}),
      }));
  }

  /** Schedules a notice for one instance (its id), or for the host when instance is undefined. */
  schedule(instance: string | undefined, input: NoticeInput, label = instance ?? 'host'): Promise<Notice> {
    return this.serial(async () => {
      const f = validateNotice(input, this.now(), instance ? 'system-maintenance' : 'instance-stop');
      const carried = instance ? this.forInstance(instance).length : this.hostNotices().length;
      if (carried >= MAX_NOTICES)
        throw couldNot(
          'BERTH_ERR_CONFLICT',
          'schedule',
          'notice for',
          label,
          `it has ${MAX_NOTICES} already`,
        );
      const n: Notice = {
        id: `instance-event-${randomBytes(9).toString('hex').slice(0, 17)}`,
        scope: instance ? 'instance' : 'host',
        ...(instance ? { instance } : {}),
        ...f,
        created_at: new Date(this.now()).toISOString(),
        acks: {},
      };
      await this.store.batch([{ type: 'put', key: `${NOTICE_PREFIX}${n.id}`, value: n }]);
      this.notices.set(n.id, n);
      this.changed(instance);
      return n;
    });
  }

  /** Cancels one notice; `instance` (an id) must be its instance, undefined a host notice. */
  cancel(instance: string | undefined, id: string): Promise<Notice> {
    return this.serial(async () => {
      const n = this.notices.get(id);
      if (!n || (instance ? n.instance !== instance : n.scope !== 'host'))
        throw new BerthError(
          'BERTH_ERR_NOT_FOUND',
          `could not find notice "${id}": no such ${instance ? 'notice on this instance' : 'host notice'}`,
        );
      await this.store.batch([{ type: 'del', key: `${NOTICE_PREFIX}${id}` }]);
      this.notices.delete(id);
      this.changed(n.instance);
      return n;
    });
  }

  /** Drops every notice of an instance that is gone. */
  forget(instance: string): Promise<void> {
    return this.serial(async () => {
      const gone = [...this.notices.values()].filter((n) => n.instance === instance);
      if (gone.length === 0) return;
      await this.store.batch(gone.map((n) => ({ type: 'del' as const, key: `${NOTICE_PREFIX}${n.id}` })));
      for (const n of gone) this.notices.delete(n.id);
    });
  }

  /**
   * Records the guest's acknowledgement. Only a notice that applies to the
   * instance can be acknowledged by it: an unknown id and another
   * instance's notice get the same 404, so a guest cannot probe for others' ids.
   */
  ack(instance: string, id: string, who: Omit<NoticeAck, 'at'>): Promise<AckResult> {
    return this.serial(async () => {
      const n = EVENT_ID_RE.test(id) ? this.notices.get(id) : undefined;
      if (!n || (n.scope === 'instance' && n.instance !== instance))
        return { status: 404, message: `no notice "${id}" for this instance` };
      const had = n.acks[instance];
      if (had) return { status: 200, message: `already acknowledged at ${had.at}`, notice: n };
      const next: Notice = {
        ...n,
        acks: { ...n.acks, [instance]: { at: new Date(this.now()).toISOString(), ...who } },
      };
      await this.store.batch([{ type: 'put', key: `${NOTICE_PREFIX}${id}`, value: next }]);
      this.notices.set(id, next);
      this.changed(instance);
      return { status: 200, message: 'acknowledged', notice: next };
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private changed(instance: string | undefined): void {
    for (const fn of this.listeners) fn(instance);
  }
}
