// What the attack rows read back from the host: audit records through the
// admin API and nft counters straight from the kernel.
import type { AuditRecord } from '../../agent/api/types.js';
import type { Lab } from '../helpers/hostnet_lab.js';
import { sh } from '../helpers/hostnet_lab.js';
import { curl, type HttpResult } from '../helpers/metadata_lab.js';

/** The newest audit record's seq (0 for an empty log): a cursor for auditSince. */
export async function auditCursor(lab: Lab): Promise<number> {
  const { records } = await lab.d.client.audit({ limit: 1 });
  return records.at(-1)?.seq ?? 0;
}

/** Every record after `after`, optionally of one event, paging through the API's 10000-record limit. */
export async function auditSince(lab: Lab, after: number, event?: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  let cursor = after;
  for (;;) {
    const { records } = await lab.d.client.audit({ after: cursor, limit: 10_000 });
    out.push(...records.filter((r) => event === undefined || r.event === event));
    const last = records.at(-1);
    if (!last || records.length < 10_000) return out;
    cursor = last.seq;
  }
}

/** A table-wide counter of berth's guard table, read from nft. */
export async function guardCounter(lab: Lab, name: string): Promise<number> {
  const out = await sh('nft', ['-j', 'list', 'counter', 'bridge', lab.guardTable(), name]);
  const items = (JSON.parse(out) as { nftables: { counter?: { packets: number } }[] }).nftables;
  return items.find((i) => i.counter)?.counter?.packets ?? 0;
}

/** curl from a netns that never throws: status 0 means no HTTP answer within `seconds`. */
export async function tryCurl(
  netns: string,
  path: string,
  args: string[] = [],
  seconds = 2,
): Promise<HttpResult> {
  try {
    return await curl(netns, path, [...args, '-m', String(seconds)]);
  } catch {
    return { status: 0, body: '', headers: '' };
  }
}

/**
 * The guard.drop record for frames from `port` dropped for `reason` since
 * `after`, waiting for it: the drop log reaches the audit a moment after the
 * frame (NFLOG, tcpdump, berthd), and a frame dropped at once has no reply
 * anyone could wait for instead.
 */
export async function guardDropRecord(
  lab: Lab,
  after: number,
  port: string,
  reason: string,
  waitMs = 5_000,
): Promise<AuditRecord | undefined> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const rec = (await auditSince(lab, after, 'guard.drop')).find(
      (r) => r.port === port && r.reason === reason,
    );
    if (rec || Date.now() > deadline) return rec;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The observation a row makes of its guard.drop record: there, from that port, of that class. */
export function sawGuardDrop(
  rec: AuditRecord | undefined,
  reason: string,
  cls: string,
): { ok: boolean; saw: string } {
  const ok = rec?.reason === reason && rec.outcome === 'refused' && rec.detail?.class === cls;
  const saw = rec
    ? `audit: guard.drop ${rec.reason} on ${rec.port} (class ${String(rec.detail?.class)}, MAC ${rec.mac ?? '-'}, IP ${rec.ip ?? '-'}, count ${String(rec.detail?.count)})`
    : `audit: no guard.drop ${reason} record`;
  return { ok, saw };
}
