// The resource model, table-driven: for every value of agent/metadata/resources.ts,
// every place a tree serves it (EC2 under each version, OpenStack under each
// version, NoCloud, berth's own paths), allowed and denied, through the HTTP
// app as a guest would ask. A denied leaf is 403 and audited; a denied field
// of a composite document is left out while the document stays what its
// reader needs; a denied required field refuses the document; listings do
// not name what the caller may not read; and a denied value's bytes appear
// in no answer at all, on any tree.
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { type PolicyRecord, RESOURCES, type Resource } from '../../agent/auth/policy.js';
import { EC2_VERSIONS } from '../../agent/metadata/ec2.js';
import type { CallerView } from '../../agent/metadata/http.js';
import { OPENSTACK_ALL } from '../../agent/metadata/openstack.js';
import { type Placement, VALUES } from '../../agent/metadata/resources.js';
import { callerView, H, instanceDoc, metadataHarness } from '../helpers/metadata_unit.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICanaryKey carol-c4@host';
const d = instanceDoc('i-0a1b', '0a:b7:e7:00:00:31', '10.77.0.31', {
  sshKeys: [{ name: 'carol-c4', key: KEY }],
  meta: { 'tagkey-c4': 'tag-canary-7f3' },
  role: 'web',
  userData: Buffer.from('#cloud-config\n# ud-canary-51\n'),
  vendorData: Buffer.from('#cloud-config\n# vd-canary-22\n'),
  password: 'pw-canary-90',
  imageSha256: 'c'.repeat(64),
});

/** Bytes of a value that must be in no answer once its resource is denied. */
const MARKERS: Partial<Record<Resource, string[]>> = {
  'meta-data/public-keys': ['AAAAICanaryKey', 'carol-c4'],
  'meta-data/tags': ['tagkey-c4', 'tag-canary-7f3'],
  'user-data': ['ud-canary-51'],
  'vendor-data': ['vd-canary-22'],
  password: ['pw-canary-90'],
  'meta-data/random-seed': ['random_seed'],
};

const allowOnly = (r: Resource): PolicyRecord => ({
  name: 'allow-it',
  identities: [`instance:${d.id}`],
  allow: [`read:${r}`],
  deny: [],
});
const denyIt = (r: Resource): PolicyRecord => ({
  name: 'deny-it',
  identities: ['*'],
  allow: [],
  deny: [`read:${r}`],
});

interface Target {
  url: string;
  /** false: this version does not serve the path (OpenStack before `since`). */
  present: boolean;
  /** The placement's own path (not a leaf found under a subtree): its parent's listing is checked too. */
  top: boolean;
}

/** The URLs a placement stands for, on every version of its tree. */
function targets(p: Placement, every: Map<string, unknown>): Target[] {
  switch (p.tree) {
    case 'ec2':
      return EC2_VERSIONS.flatMap((v) => {
        const url = `/${v}/${p.path}`;
        const under = p.path.endsWith('/')
          ? [...every.keys()]
              .filter((k) => k.startsWith(url) && k !== url)
              .map((k) => ({ url: k, top: false }))
          : [];
        return [{ url, top: true }, ...under].map((x) => ({ ...x, present: true }));
      });
    case 'openstack':
      return OPENSTACK_ALL.map((v) => ({
        url: `/openstack/${v}/${p.path}`,
        present: p.since === undefined || v === 'latest' || v >= p.since,
        top: true,
      }));
    default:
      return [{ url: `/${p.tree}/${p.path}`, present: true, top: true }];
  }
}

function parseDoc(tree: string, body: string): Record<string, unknown> {
  return (tree === 'nocloud' ? parseYaml(body) : JSON.parse(body)) as Record<string, unknown>;
}

/** The names a listing shows, without the trailing `/` of directories. */
function listed(body: string): string[] {
  return body.split('\n').map((l) => l.replace(/\/$/, '').replace(/=.*$/, ''));
}

t.test('the table: one resource per value, every resource used, no place claimed twice', async (t) => {
  const used = new Set(VALUES.map((v) => v.resource));
  t.same(
    [...used].sort(),
    [...RESOURCES].sort(),
    'every resource has a value and every value a known resource',
  );
  t.equal(used.size, VALUES.length, 'each resource is one value');
  const places = VALUES.flatMap((v) => v.placements.map((p) => `${p.tree} ${p.path}#${p.field ?? ''}`));
  t.equal(new Set(places).size, places.length, 'no path or field is placed under two values');
  for (const tree of ['ec2', 'openstack', 'nocloud', 'berth'])
    t.ok(
      VALUES.some((v) => v.placements.some((p) => p.tree === tree)),
      `${tree} serves values from the table`,
    );
});

for (const row of VALUES) {
  for (const mode of ['allow', 'deny'] as const) {
    t.test(`${row.resource} (${row.value}), ${mode}ed`, async (t) => {
      const view: CallerView = callerView(d, [
        mode === 'allow' ? allowOnly(row.resource) : denyIt(row.resource),
      ]);
      const { app, state } = metadataHarness(view);
      const get = (url: string) => app.inject({ method: 'GET', url, headers: H });
      // The index reveals nothing about anyone and is never denied.
      const denied = mode === 'deny' && row.resource !== 'index';
      for (const p of row.placements) {
        for (const target of targets(p, view.items)) {
          const { url } = target;
          const where = p.field ? `${url}#${p.field}` : url;
          // The token is minted only for a named audience, with the header a forged request lacks.
          const r =
            row.resource === 'identity-token'
              ? await app.inject({
                  method: 'GET',
                  url: `${url}?audience=aud.test`,
                  headers: { ...H, 'metadata-flavor': 'berth' },
                })
              : await get(url);
          if (!target.present) {
            t.equal(r.statusCode, 404, `${where}: not served by this version`);
            continue;
          }
          const refused = state.refusals.find((x) => x.path === `GET ${url}`);
          if (p.field === undefined || (denied && p.required)) {
            t.equal(r.statusCode, denied ? 403 : 200, `${where}: ${denied ? 403 : 200}`);
            if (denied) t.match(refused, { status: 403, reason: /deny-it/ }, `${where}: refusal audited`);
            else t.equal(refused, undefined, `${where}: nothing refused`);
            if (!p.field && target.top) {
              const slash = url.replace(/\/$/, '').lastIndexOf('/');
              const name = url.replace(/\/$/, '').slice(slash + 1);
              const parent = (await get(url.slice(0, slash + 1))).body;
              t.equal(
                listed(parent).includes(name),
                !denied,
                `${where}: the parent listing ${denied ? 'leaves it out' : 'names it'}`,
              );
            }
            continue;
          }
          t.equal(r.statusCode, 200, `${where}: the document is served`);
          const fields = parseDoc(p.tree, r.body);
          t.equal(p.field in fields, !denied, `${where}: field ${denied ? 'left out' : 'present'}`);
          const anchor = VALUES.flatMap((v) => v.placements).find(
            (q) => q.tree === p.tree && q.path === p.path && q.required,
          );
          if (anchor?.field) t.ok(anchor.field in fields, `${where}: still carries ${anchor.field}`);
        }
      }
      // No answer on any tree carries a denied value's bytes.
      const markers = denied ? (MARKERS[row.resource] ?? []) : [];
      for (const [path, item] of view.items) {
        if (!markers.length || path.endsWith('/')) continue;
        const body = item.body.toString();
        const leak = markers.find((m) => body.includes(m));
        if (leak) t.fail(`${path} (${item.resource}) carries "${leak}" although ${row.resource} is denied`);
      }
      if (markers.length) t.pass(`${markers.join(', ')} in no answer of ${view.items.size} paths`);
    });
  }
}

t.test(
  'keys and tags denied together: no tree shows them, every tree still serves its documents',
  async (t) => {
    const policy: PolicyRecord = {
      name: 'no-keys-tags',
      identities: ['*'],
      allow: [],
      deny: ['read:meta-data/public-keys', 'read:meta-data/tags'],
    };
    const { app } = metadataHarness(callerView(d, [policy]));
    const get = async (url: string) => (await app.inject({ method: 'GET', url, headers: H })).body;
    const os = JSON.parse(await get('/openstack/latest/meta_data.json'));
    t.notOk(
      'public_keys' in os || 'keys' in os || 'meta' in os,
      'OpenStack meta_data.json: no keys, no meta',
    );
    t.equal(os.uuid, d.uuid);
    const nc = parseYaml(await get('/nocloud/meta-data'));
    t.same(Object.keys(nc).sort(), ['instance-id', 'local-hostname'], 'NoCloud meta-data: no public-keys');
    for (const v of EC2_VERSIONS) {
      const listing = listed(await get(`/${v}/meta-data/`));
      t.notOk(listing.includes('public-keys') || listing.includes('tags'), `/${v}/meta-data/ lists neither`);
      t.ok(listing.includes('instance-id'));
    }
  },
);

t.test('a typo in a policy is refused, not silently a no-op', async (t) => {
  const { validatePolicy } = await import('../../agent/auth/policy.js');
  t.throws(
    () => validatePolicy({ name: 'typo', identities: ['*'], allow: [], deny: ['read:meta-data/public-key'] }),
    { field: 'deny.0', message: /names no resource/ },
  );
  for (const ok of ['read:*', 'read:meta-data/*', 'read:meta-data/public-keys', 'write:password'])
    t.doesNotThrow(() => validatePolicy({ name: 'ok', identities: ['*'], allow: [ok], deny: [] }), ok);
});
