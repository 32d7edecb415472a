// Metadata rows: a session token used by another instance, X-Forwarded-For
// on a token PUT, and a DNS-rebinding Host header. Two guests share one
// network (none of these rows changes what the other rows see): g1 with
// optional tokens, g2 requiring them.
import type { Guest } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';
import { auditCursor, auditSince, tryCurl } from './observe.js';
import { type AttackLab, attack, see } from './result.js';

const ID = '/latest/meta-data/instance-id';
const TOKEN = '/latest/api/token';
const PUT = ['-X', 'PUT', '-H', 'X-aws-ec2-metadata-token-ttl-seconds: 300'];

const pairs = new WeakMap<AttackLab, Promise<{ g1: Guest; g2: Guest }>>();

/** The two guests, made the first time a row of this file asks for them. */
function guests(ctx: AttackLab): Promise<{ g1: Guest; g2: Guest }> {
  let p = pairs.get(ctx);
  if (!p) {
    p = (async () => {
      await ctx.lab.network('md', ctx.subnet());
      const [g1, g2] = await Promise.all([
        mdGuest(ctx.lab, 'md-g1', 'md'),
        mdGuest(ctx.lab, 'md-g2', 'md', ['--tokens', 'required']),
      ]);
      return { g1, g2 };
    })();
    pairs.set(ctx, p);
  }
  return p;
}

/** The first metadata refusal after `cursor` from `port` whose reason matches. */
async function refusal(ctx: AttackLab, cursor: number, port: string, reason: RegExp) {
  const records = await auditSince(ctx.lab, cursor, 'metadata.request');
  return records.find((r) => r.port === port && reason.test(r.reason));
}

export const tokenOtherInstance = attack(
  'A token (IMDSv2) from another instance',
  "401 for g2's token presented by g1, audited; g2 is served with it",
  async (_t, ctx) => {
    const { g1, g2 } = await guests(ctx);
    const put = await tryCurl(g2.netns, TOKEN, PUT);
    const token = ['-H', `X-aws-ec2-metadata-token: ${put.body}`];
    const own = await tryCurl(g2.netns, ID, token);
    const bare = await tryCurl(g1.netns, ID);
    const cursor = await auditCursor(ctx.lab);
    const stolen = await tryCurl(g1.netns, ID, token);
    const rec = await refusal(ctx, cursor, g1.port, /./);
    return [
      see(
        put.status === 200 && own.status === 200 && own.body === g2.id,
        `control: g2 gets a token (${put.status}) and is served with it (${own.status})`,
      ),
      see(bare.status === 200, `control: g1 without a token (optional for it): ${bare.status}`),
      see(stolen.status === 401, `g1 with g2's token: ${stolen.status} ${stolen.body.trim()}`),
      see(
        rec?.instance === g1.id && (rec.detail as { status?: number })?.status === 401,
        `audit: ${rec ? `${rec.reason} (g1's port, 401)` : 'no record'}`,
      ),
    ];
  },
);

export const xffOnTokenPut = attack(
  'X-Forwarded-For on token PUT',
  '403, audited; the same PUT without the header gets a token',
  async (_t, ctx) => {
    const { g2 } = await guests(ctx);
    const control = await tryCurl(g2.netns, TOKEN, PUT);
    const cursor = await auditCursor(ctx.lab);
    // Mixed case: header names are case-insensitive, and so must the check be.
    const proxied = await tryCurl(g2.netns, TOKEN, [...PUT, '-H', 'x-FORWARDED-for: 203.0.113.9']);
    const rec = await refusal(ctx, cursor, g2.port, /X-Forwarded-For/);
    return [
      see(control.status === 200 && control.body.length > 0, `control: plain PUT: ${control.status}`),
      see(
        proxied.status === 403 && !proxied.body.includes(control.body),
        `with x-FORWARDED-for: ${proxied.status} ${proxied.body.trim()}`,
      ),
      see(rec !== undefined, `audit: ${rec ? rec.reason : 'no record'}`),
    ];
  },
);

export const dnsRebinding = attack(
  'A DNS-rebinding Host header',
  '403 for a Host the service does not own, audited; the metadata address and names are served',
  async (_t, ctx) => {
    const { g1 } = await guests(ctx);
    const ok = await Promise.all(
      ['169.254.169.254', 'metadata'].map((h) => tryCurl(g1.netns, ID, ['-H', `Host: ${h}`])),
    );
    const cursor = await auditCursor(ctx.lab);
    const hosts = ['evil.example', '169.254.169.254.nip.io', 'evil.example:80'];
    const bad = await Promise.all(hosts.map((h) => tryCurl(g1.netns, ID, ['-H', `Host: ${h}`])));
    const records = (await auditSince(ctx.lab, cursor, 'metadata.request')).filter(
      (r) => r.port === g1.port && /Host/.test(r.reason),
    );
    return [
      see(
        ok.every((r) => r.status === 200 && r.body === g1.id),
        `control: Host 169.254.169.254 and metadata: ${ok.map((r) => r.status).join(', ')}`,
      ),
      see(
        bad.every((r) => r.status === 403 && !r.body.includes(g1.id)),
        `Host ${hosts.join(', ')}: ${bad.map((r) => r.status).join(', ')}`,
      ),
      see(records.length === hosts.length, `audit: ${records.length} Host refusals recorded`),
    ];
  },
);
