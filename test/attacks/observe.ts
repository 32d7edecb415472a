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
