// Metadata rows: a session token used by another instance, X-Forwarded-For
// on a token PUT and on any other write, an identity token asked for by a
// forged request, a DNS-rebinding Host header, a token-less POST where tokens
// are required, a deny checked on every tree, a deny tried under other
// spellings of its path, and If-None-Match on a denied path. Two guests share
// one network (none of these rows changes what the other rows see): g1 with
// optional tokens, g2 requiring them; the deny rows make their own guests,
// and policies naming only them.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditRecord } from '../../agent/api/types.js';
import { EC2_VERSIONS } from '../../agent/metadata/ec2.js';
import { OPENSTACK_ALL } from '../../agent/metadata/openstack.js';
import type { Guest } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';
import { auditCursor, auditSince, tryCurl } from './observe.js';
import { type AttackLab, attack, see } from './result.js';

const ID = '/latest/meta-data/instance-id';
const TOKEN = '/latest/api/token';
const IDENTITY_TOKEN = '/latest/dynamic/berth/identity';
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

export const identityTokenForged = attack(
  'An identity token (JWT) asked for by a forged request',
  "403 without Metadata-Flavor (what a server-side request forgery sends) and 403 with X-Forwarded-For, each audited; the guest's own request with the header gets a JWT",
  async (_t, ctx) => {
    const { g1 } = await guests(ctx);
    const url = `${IDENTITY_TOKEN}?audience=${encodeURIComponent('https://vault.example')}`;
    const flavor = ['-H', 'Metadata-Flavor: berth'];
    const control = await tryCurl(g1.netns, url, flavor);
    const cursor = await auditCursor(ctx.lab);
    const bare = await tryCurl(g1.netns, url);
    const proxied = await tryCurl(g1.netns, url, [...flavor, '-H', 'X-Forwarded-For: 203.0.113.9']);
    const bareRec = await refusal(ctx, cursor, g1.port, /Metadata-Flavor/);
    const proxiedRec = await refusal(ctx, cursor, g1.port, /X-Forwarded-For/);
    const isJwt = (s: string) => /^[\w-]+\.[\w-]+\.[\w-]+$/.test(s);
    return [
      see(control.status === 200 && isJwt(control.body), `control: with Metadata-Flavor: ${control.status}`),
      see(
        bare.status === 403 && !isJwt(bare.body),
        `without Metadata-Flavor: ${bare.status} ${bare.body.trim()}`,
      ),
      see(
        proxied.status === 403 && !isJwt(proxied.body),
        `with X-Forwarded-For: ${proxied.status} ${proxied.body.trim()}`,
      ),
      see(
        bareRec !== undefined && proxiedRec !== undefined,
        `audit: ${bareRec?.reason} / ${proxiedRec?.reason}`,
      ),
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

const PASSWORD = '/openstack/latest/password';
const POST = ['-X', 'POST', '-H', 'Content-Type: text/plain', '--data-binary'];

export const tokenlessPost = attack(
  'A token-less POST where tokens are required',
  '401 for the OpenStack password POST without a token (403 with X-Forwarded-For as well), both audited; nothing is stored; with its token the guest posts',
  async (_t, ctx) => {
    const { g2 } = await guests(ctx);
    const cursor = await auditCursor(ctx.lab);
    const bare = await tryCurl(g2.netns, PASSWORD, [...POST, 'stolen-1']);
    const proxied = await tryCurl(g2.netns, PASSWORD, [
      ...POST,
      'stolen-2',
      '-H',
      'X-Forwarded-For: 203.0.113.9',
    ]);
    const token = ['-H', `X-aws-ec2-metadata-token: ${(await tryCurl(g2.netns, TOKEN, PUT)).body}`];
    const stored = await tryCurl(g2.netns, PASSWORD, token);
    const own = await tryCurl(g2.netns, PASSWORD, [...token, ...POST, 'own-secret']);
    const after = await tryCurl(g2.netns, PASSWORD, token);
    const noToken = await refusal(ctx, cursor, g2.port, /requires a session token/);
    const viaProxy = await refusal(ctx, cursor, g2.port, /X-Forwarded-For/);
    return [
      see(bare.status === 401, `token-less POST: ${bare.status} ${bare.body.trim()}`),
      see(proxied.status === 403, `token-less POST with X-Forwarded-For: ${proxied.status}`),
      see(stored.status === 200 && stored.body === '', `nothing stored: the password reads "${stored.body}"`),
      see(
        own.status === 200 && after.body === 'own-secret',
        `control: with its token g2 posts (${own.status}) and reads it back`,
      ),
      see(
        noToken?.path === `POST ${PASSWORD}` && (noToken.detail as { status?: number })?.status === 401,
        `audit: ${noToken ? `${noToken.path}, 401, g2's port` : 'no record of the token-less POST'}`,
      ),
      see(
        viaProxy?.path === `POST ${PASSWORD}` && (viaProxy.detail as { status?: number })?.status === 403,
        `audit: ${viaProxy ? `${viaProxy.path}, 403: ${viaProxy.reason}` : 'no record of the proxied POST'}`,
      ),
    ];
  },
);

export const xffOnWrite = attack(
  'X-Forwarded-For on a write',
  '403 for a password POST or any other write carrying X-Forwarded-For (or Forwarded), each audited; reads are unaffected and the same POST without it is stored',
  async (_t, ctx) => {
    const { g1 } = await guests(ctx);
    const cursor = await auditCursor(ctx.lab);
    const xff = ['-H', 'X-Forwarded-For: 203.0.113.9'];
    const post = await tryCurl(g1.netns, PASSWORD, [...POST, 'via-proxy', ...xff]);
    const fwd = await tryCurl(g1.netns, PASSWORD, [...POST, 'via-proxy', '-H', 'Forwarded: for=203.0.113.9']);
    const del = await tryCurl(g1.netns, ID, ['-X', 'DELETE', ...xff]);
    const read = await tryCurl(g1.netns, ID, xff);
    const stored = await tryCurl(g1.netns, PASSWORD);
    const own = await tryCurl(g1.netns, PASSWORD, [...POST, 'direct']);
    const records = (await auditSince(ctx.lab, cursor, 'metadata.request')).filter(
      (r) => r.port === g1.port && /proxied write/.test(r.reason),
    );
    const paths = records.map((r) => r.path).sort();
    const want = [`DELETE ${ID}`, `POST ${PASSWORD}`, `POST ${PASSWORD}`];
    return [
      see(
        post.status === 403 && fwd.status === 403 && del.status === 403,
        `POST with X-Forwarded-For ${post.status}, with Forwarded ${fwd.status}, DELETE with X-Forwarded-For ${del.status}`,
      ),
      see(stored.body === '', `nothing stored through the proxy: the password reads "${stored.body}"`),
      see(read.status === 200 && read.body === g1.id, `control: a GET with X-Forwarded-For: ${read.status}`),
      see(own.status === 200, `control: the same POST without it: ${own.status}`),
      see(
        JSON.stringify(paths) === JSON.stringify(want),
        `audit: ${records.length} proxied writes refused (${paths.join(', ')})`,
      ),
    ];
  },
);

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDenyEveryTreeKeyAAAAAAAAAAAAAAAAAAAAAAAA dana-k7@lab';
const TAG = ['tagkey-k7', 'tagvalue-k7'] as const;
const MARKS = ['DenyEveryTreeKey', 'dana-k7', ...TAG];

/** Every path of every tree where the keys or tags are, or are listed, for one guest. */
function crawlPaths(): string[] {
  const ec2 = EC2_VERSIONS.flatMap((v) => [
    `/${v}/meta-data/`,
    `/${v}/meta-data/public-keys/`,
    `/${v}/meta-data/public-keys/0/openssh-key`,
    `/${v}/meta-data/tags/instance/`,
    `/${v}/meta-data/tags/instance/${TAG[0]}`,
  ]);
  const os = OPENSTACK_ALL.map((v) => `/openstack/${v}/meta_data.json`);
  return [...ec2, ...os, '/nocloud/meta-data', '/berth/identity'];
}

/** Refused requests the audit accounts for: one record each, or counted in a port's summary. */
function accounted(records: AuditRecord[], port: string, reason: RegExp): number {
  let n = 0;
  for (const r of records) {
    if (r.port !== port) continue;
    if (r.event === 'metadata.request' && reason.test(r.reason)) n += 1;
    if (r.event === 'metadata.suppressed')
      for (const [why, c] of Object.entries((r.detail?.reasons ?? {}) as Record<string, number>))
        if (reason.test(why)) n += c;
  }
  return n;
}

export const denyEveryTree = attack(
  'A deny checked on every tree',
  'with read:meta-data/public-keys and read:meta-data/tags denied, no tree shows the keys or tags (EC2 under each version 403 and unlisted, OpenStack meta_data.json and NoCloud meta-data without them, berth paths neither); every 403 is in the audit',
  async (t, ctx) => {
    await guests(ctx);
    const dir = await mkdtemp(join(tmpdir(), 'berth-deny-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'key.pub'), `${KEY}\n`);
    const g = await mdGuest(ctx.lab, 'md-g3', 'md', [
      ...['--ssh-key', join(dir, 'key.pub'), '--meta', `${TAG[0]}=${TAG[1]}`],
    ]);
    const paths = crawlPaths();
    const crawl = async () => {
      const out = [];
      for (const p of paths) out.push({ path: p, ...(await tryCurl(g.netns, p)) });
      return out;
    };
    const before = await crawl();
    const set = await ctx.lab.ctl([
      ...['policy', 'set', 'md-g3-no-keys-tags', '--identity', `instance:${g.id}`],
      ...['--deny', 'read:meta-data/public-keys', '--deny', 'read:meta-data/tags'],
    ]);
    const cursor = await auditCursor(ctx.lab);
    const after = await crawl();
    // Refusals over a port's share of a second are summarised once a second.
    await new Promise((r) => setTimeout(r, 1500));
    const records = await auditSince(ctx.lab, cursor);
    const shows = <T extends { body: string }>(bodies: T[]) =>
      bodies.filter((r) => MARKS.some((m) => r.body.includes(m)));
    const trees = (rs: { path: string }[]) =>
      [...new Set(rs.map((r) => r.path.split('/')[1]?.replace(/^\d.*|latest/, 'ec2')))].sort().join(', ');
    const refused = after.filter((r) => r.status === 403 || r.status === 404);
    const served = after.filter((r) => r.status === 200);
    const docs = served.filter((r) => /meta_data\.json|nocloud|berth/.test(r.path));
    const n = accounted(records, g.port, /md-g3-no-keys-tags/);
    const listings = after.filter((r) => r.path.endsWith('/meta-data/'));
    const unlisted = listings.filter((r) => r.status === 200 && !/^(public-keys|tags)\/$/m.test(r.body));
    return [
      see(set.code === 0, `policy set: ${set.code === 0 ? 'ok' : set.stderr.trim()}`),
      see(
        shows(before).length === 4 * EC2_VERSIONS.length + OPENSTACK_ALL.length + 1,
        `control: before the deny, ${shows(before).length} answers carry the keys or tags (${trees(shows(before))})`,
      ),
      see(shows(after).length === 0, `after: ${shows(after).length} of ${after.length} answers carry them`),
      see(
        unlisted.length === EC2_VERSIONS.length,
        `EC2 meta-data/ listings without public-keys/ and tags/: ${unlisted.length} of ${listings.length}`,
      ),
      see(
        docs.length === OPENSTACK_ALL.length + 2 && refused.length === 4 * EC2_VERSIONS.length,
        `EC2 keys and tags 403 under ${EC2_VERSIONS.length} versions (${refused.length}); ${docs.length} composite documents still served (${trees(docs)})`,
      ),
      see(
        n === refused.length,
        `audit: ${n} of ${refused.length} refusals recorded on md-g3's port (records and per-port summaries)`,
      ),
    ];
  },
);

/** A deny's leaf under spellings EC2 and nginx answer as the clean path (agent/metadata/path.ts). */
const SPELLINGS = [
  '//latest/meta-data/hostname',
  '/latest//meta-data//hostname',
  '/latest/meta-data/hostname/',
  '/latest/meta-data///local-hostname//',
  '/2009-04-04//meta-data/hostname/',
];

export const denyBySpelling = attack(
  'A deny bypassed by a path spelling',
  'with read:meta-data/hostname denied, doubled slashes and a trailing slash on the leaf (each served before the deny) are 403 and audited under the normalized path; OpenStack and NoCloud documents under doubled slashes leave the host name out',
  async (_t, ctx) => {
    await guests(ctx);
    const g = await mdGuest(ctx.lab, 'md-g4', 'md');
    // The host name is the instance name (with the network's domain, if it has one).
    const name = g.name;
    const docs = ['/openstack//latest//meta_data.json', '//nocloud//meta-data'];
    const before = await Promise.all(SPELLINGS.map((p) => tryCurl(g.netns, p)));
    const set = await ctx.lab.ctl([
      ...['policy', 'set', 'spelling-no-name', '--identity', `instance:${g.id}`],
      ...['--deny', 'read:meta-data/hostname'],
    ]);
    const cursor = await auditCursor(ctx.lab);
    const after = [];
    for (const p of SPELLINGS) after.push(await tryCurl(g.netns, p));
    const docAfter = await Promise.all(docs.map((p) => tryCurl(g.netns, p)));
    const id = await tryCurl(g.netns, '//latest/meta-data/instance-id');
    const records = (await auditSince(ctx.lab, cursor, 'metadata.request')).filter(
      (r) => r.port === g.port && /spelling-no-name/.test(r.reason),
    );
    const paths = records.map((r) => r.path);
    const clean = SPELLINGS.map((p) => `GET ${p.replace(/\/{2,}/g, '/')}`);
    return [
      see(set.code === 0, `policy set: ${set.code === 0 ? 'ok' : set.stderr.trim()}`),
      see(
        before.every((r) => r.status === 200 && r.body.split('.')[0] === name),
        `control: before the deny each spelling serves the host name (${before.map((r) => r.status).join(', ')})`,
      ),
      see(
        after.every((r) => r.status === 403 && !r.body.includes(name)),
        `after: ${after.map((r) => r.status).join(', ')}`,
      ),
      see(
        docAfter.every((r) => r.status === 200 && !r.body.includes(name)),
        `documents under doubled slashes: ${docAfter.map((r) => r.status).join(', ')}, host name ${docAfter.some((r) => r.body.includes(name)) ? 'shown' : 'left out'}`,
      ),
      see(id.status === 200 && id.body === g.id, `control: //latest/meta-data/instance-id: ${id.status}`),
      see(
        JSON.stringify(paths) === JSON.stringify(clean),
        `audit: ${records.length} refusals, at ${paths.join(', ') || 'nothing'}`,
      ),
    ];
  },
);

const ETAG_TAG = '/latest/meta-data/tags/instance/etag-k9';
const etagOf = (headers: string) => /^etag: (.*)$/im.exec(headers)?.[1]?.trim() ?? '';

export const etagOnDenied = attack(
  'If-None-Match on a denied path',
  '403 for a denied path whatever If-None-Match says (the right ETag, or *), never 304, which would confirm a guess of the bytes; each audited; allowed paths answer 304',
  async (_t, ctx) => {
    await guests(ctx);
    const g = await mdGuest(ctx.lab, 'md-g5', 'md', ['--meta', 'etag-k9=secret-k9']);
    const before = await tryCurl(g.netns, ETAG_TAG);
    const tag = etagOf(before.headers);
    const set = await ctx.lab.ctl([
      ...['policy', 'set', 'md-g5-no-tags', '--identity', `instance:${g.id}`],
      ...['--deny', 'read:meta-data/tags'],
    ]);
    const cursor = await auditCursor(ctx.lab);
    const right = await tryCurl(g.netns, ETAG_TAG, ['-H', `If-None-Match: ${tag}`]);
    const star = await tryCurl(g.netns, ETAG_TAG, ['-H', 'If-None-Match: *']);
    const idTag = etagOf((await tryCurl(g.netns, ID)).headers);
    const control = await tryCurl(g.netns, ID, ['-H', `If-None-Match: ${idTag}`]);
    const n = (await auditSince(ctx.lab, cursor, 'metadata.request')).filter(
      (r) => r.port === g.port && /md-g5-no-tags/.test(r.reason),
    ).length;
    return [
      see(
        before.status === 200 && tag !== '' && set.code === 0,
        `control: before the deny the tag is served with ETag ${tag || 'none'}; policy set ${set.code === 0 ? 'ok' : set.stderr.trim()}`,
      ),
      see(
        right.status === 403 && star.status === 403 && etagOf(right.headers) === '',
        `If-None-Match with its ETag: ${right.status}, with *: ${star.status}`,
      ),
      see(control.status === 304, `control: an allowed path with its ETag: ${control.status}`),
      see(n === 2, `audit: ${n} of 2 refusals recorded on md-g5's port`),
    ];
  },
);

const ACK_OF = (id: string) => `/berth/events/${id}/ack`;

export const eventAckForeign = attack(
  'A maintenance notice acknowledged by another instance',
  "404 for g2 acking g1's notice with g2's own valid token (the same answer as an unknown id, so ids cannot be probed), 403 with X-Forwarded-For, 401 without g2's token; each audited on g2's port; nothing recorded; g1 acks its own",
  async (_t, ctx) => {
    const { g1, g2 } = await guests(ctx);
    const at = new Date(Date.now() + 3600_000).toISOString();
    const made = await ctx.lab.ctl(['instance', 'notice', 'md-g1', '--maintenance', at, '--json']);
    const id =
      made.code === 0 ? (JSON.parse(made.stdout) as { id: string }).id : 'instance-event-00000000000000000';
    const token = ['-H', `X-aws-ec2-metadata-token: ${(await tryCurl(g2.netns, TOKEN, PUT)).body}`];
    const cursor = await auditCursor(ctx.lab);
    const foreign = await tryCurl(g2.netns, ACK_OF(id), ['-X', 'POST', ...token]);
    const unknown = await tryCurl(g2.netns, ACK_OF('instance-event-00000000000000000'), [
      '-X',
      'POST',
      ...token,
    ]);
    const proxied = await tryCurl(g2.netns, ACK_OF(id), [
      '-X',
      'POST',
      ...token,
      '-H',
      'X-Forwarded-For: 203.0.113.9',
    ]);
    const bare = await tryCurl(g2.netns, ACK_OF(id), ['-X', 'POST']);
    const listed = await ctx.lab.ctl(['instance', 'notice', 'md-g1', '--json']);
    const acksBefore =
      listed.code === 0
        ? Object.keys((JSON.parse(listed.stdout) as { notices: { acks: object }[] }).notices[0]?.acks ?? {})
        : ['?'];
    const own = await tryCurl(g1.netns, ACK_OF(id), ['-X', 'POST']);
    const records = (await auditSince(ctx.lab, cursor, 'metadata.request')).filter(
      (r) => r.port === g2.port && String(r.path).startsWith('POST /berth/events/'),
    );
    const statuses = records.map((r) => (r.detail as { status?: number })?.status).sort();
    return [
      see(made.code === 0, `control: notice ${id} scheduled for md-g1`),
      see(
        foreign.status === 404 &&
          unknown.status === 404 &&
          foreign.body === unknown.body.replace('instance-event-00000000000000000', id),
        `g2 acking g1's notice: ${foreign.status}; an unknown id: ${unknown.status} (the same answer)`,
      ),
      see(
        proxied.status === 403 && bare.status === 401,
        `with X-Forwarded-For: ${proxied.status}; without g2's token: ${bare.status}`,
      ),
      see(acksBefore.length === 0, `nothing recorded: acks ${JSON.stringify(acksBefore)}`),
      see(own.status === 200, `control: g1 acks its own notice: ${own.status}`),
      see(
        JSON.stringify(statuses) === JSON.stringify([401, 403, 404, 404]),
        `audit: ${records.length} refused acks on g2's port (${statuses.join(', ')})`,
      ),
    ];
  },
);

const WAIT_TAG = '/latest/meta-data/tags/instance/wait-k7';

export const waitOnDenied = attack(
  'wait_for_change on a denied path, and across a deny',
  'a wait on a denied path is refused at once (403, never held); a wait held when a deny lands answers 403, never the value; recursive=true leaves the denied leaf out; each refusal audited',
  async (_t, ctx) => {
    await guests(ctx);
    const g = await mdGuest(ctx.lab, 'md-g6', 'md', ['--meta', 'wait-k7=secret-k7']);
    const tag = etagOf((await tryCurl(g.netns, WAIT_TAG)).headers);
    const waitUrl = (extra: string) => `${WAIT_TAG}?wait_for_change=true&timeout_sec=20${extra}`;
    const held = tryCurl(g.netns, waitUrl(`&last_etag=${encodeURIComponent(tag)}`), [], 25);
    await new Promise((r) => setTimeout(r, 500));
    const cursor = await auditCursor(ctx.lab);
    const set = await ctx.lab.ctl([
      ...['policy', 'set', 'md-g6-no-tags', '--identity', `instance:${g.id}`],
      ...['--deny', 'read:meta-data/tags'],
    ]);
    const w = await held;
    const started = Date.now();
    const fresh = await tryCurl(g.netns, waitUrl(''), [], 25);
    const freshMs = Date.now() - started;
    const rec = await tryCurl(g.netns, '/latest/meta-data/?recursive=true');
    const n = (await auditSince(ctx.lab, cursor, 'metadata.request')).filter(
      (r) => r.port === g.port && /md-g6-no-tags/.test(r.reason),
    ).length;
    return [
      see(
        tag !== '' && set.code === 0,
        `control: the tag is served with ETag ${tag || 'none'}; policy set ${set.code === 0 ? 'ok' : set.stderr.trim()}`,
      ),
      see(
        w.status === 403 && !w.body.includes('secret-k7'),
        `the wait held when the deny landed: ${w.status}${w.body.includes('secret-k7') ? ' WITH the value' : ''}`,
      ),
      see(
        fresh.status === 403 && freshMs < 5000,
        `a new wait on the denied path: ${fresh.status} after ${freshMs} ms`,
      ),
      see(
        rec.status === 200 && rec.body.includes(g.id) && !rec.body.includes('secret-k7'),
        `recursive=true on meta-data/: ${rec.status}, ${rec.body.includes('secret-k7') ? 'WITH the denied value' : 'without the denied tag'}`,
      ),
      see(n >= 2, `audit: ${n} refusals recorded on md-g6's port`),
    ];
  },
);
