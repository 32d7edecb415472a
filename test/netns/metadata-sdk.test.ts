// The AWS SDKs' own IMDS clients against berth, from inside netns guests whose
// instances require IMDSv2 tokens, called through their public APIs only:
// botocore (the SDK for Python, Debian's python3-botocore under
// /usr/bin/python3) and the AWS SDK for JavaScript v3's MetadataService (node,
// run in the guest's namespace). The token flow is checked on berth's side:
// these instances refuse and audit every token-less read, so a served answer
// and no refusal in the audit mean each read carried a token berth issued.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { AVAILABILITY_ZONE } from '../../agent/metadata/doc.js';
import { auditCursor, auditSince } from '../attacks/observe.js';
import { removePrefixed } from '../helpers/berthd.js';
import { isRoot, type Lab, PYTHON, startLab } from '../helpers/hostnet_lab.js';
import { curl, mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const BOTO = fileURLToPath(new URL('../helpers/imds_sdk.py', import.meta.url));
const JS = fileURLToPath(new URL('../helpers/imds_js.mjs', import.meta.url));

const AWS_IMDS_ENV = [
  'AWS_EC2_METADATA_DISABLED',
  'AWS_EC2_METADATA_SERVICE_ENDPOINT',
  'AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE',
  'AWS_EC2_METADATA_V1_DISABLED',
];

function inGuest(netns: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // tap's NODE_OPTIONS (its process hooks) stay out of the guest's node, and
    // the SDKs' own settings from the host's environment out of both clients:
    // each must find 169.254.169.254 by itself.
    const unset = ['NODE_OPTIONS', 'AWS_PROFILE', 'AWS_CONFIG_FILE', ...AWS_IMDS_ENV].flatMap((v) => [
      '-u',
      v,
    ]);
    execFile(
      'ip',
      ['netns', 'exec', netns, 'env', ...unset, ...argv],
      { encoding: 'utf8', timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** The metadata refusals audited on a port since `cursor`. */
async function refusals(lab: Lab, cursor: number, port: string) {
  return (await auditSince(lab, cursor, 'metadata.request')).filter((r) => r.port === port);
}

// One berthd for the file, named with this helper's prefix (`ma`).
const prefix = `ma${randomBytes(1).toString('hex')}`;
t.teardown(() => removePrefixed(prefix));
const lab = await startLab(t, { prefix });
await lab.network('sdk', '10.74.0.0/24');

t.test(
  "botocore's public IMDS API: the region from the zone, no credentials, IMDSv2 throughout",
  async (t) => {
    const g = await mdGuest(lab, 'ma-boto', 'sdk', ['--tokens', 'required']);
    const cursor = await auditCursor(lab);
    const r = await inGuest(g.netns, [PYTHON, BOTO]);
    t.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { region: string | null; credentials: object; base_url: string };
    t.equal(got.base_url, 'http://169.254.169.254/', "botocore's default endpoint");
    t.equal(got.region, AVAILABILITY_ZONE.slice(0, -1), 'the region botocore derives from the zone');
    t.same(got.credentials, {}, 'berth serves no IAM role: botocore finds no credentials');
    t.same(
      await refusals(lab, cursor, g.port),
      [],
      'no read of botocore was refused: each carried a token berth issued',
    );
    // The evidence above has teeth: the same instance refuses and audits a token-less read.
    const bare = await curl(g.netns, '/latest/meta-data/placement/availability-zone/');
    t.equal(bare.status, 401, 'control: the read botocore made, without a token, is 401');
    t.match(
      await refusals(lab, cursor, g.port),
      [{ path: 'GET /latest/meta-data/placement/availability-zone/', reason: /requires a session token/ }],
      'control: and audited',
    );
  },
);

t.test("the AWS SDK for JavaScript v3's MetadataService, as its README calls it", async (t) => {
  const g = await mdGuest(lab, 'ma-js', 'sdk', ['--tokens', 'required']);
  const cursor = await auditCursor(lab);
  const paths = ['/latest/meta-data/instance-id', '/latest/meta-data/placement/availability-zone'];
  const r = await inGuest(g.netns, [process.execPath, JS, ...paths]);
  t.equal(r.code, 0, r.stderr);
  const got = JSON.parse(r.stdout) as {
    token: boolean;
    answers: Record<string, { status: number; body?: string; error?: string }>;
    sent: string[];
  };
  t.equal(got.token, true, 'fetchMetadataToken() got a token');
  t.ok(got.sent.includes('PUT /latest/api/token'), 'its token PUT');
  t.ok(
    got.sent.includes('GET //latest/meta-data/instance-id'),
    `the doubled slash went on the wire: ${got.sent.join(', ')}`,
  );
  t.same(got.answers[paths[0] as string], { status: 200, body: g.id }, 'its own instance id');
  t.same(got.answers[paths[1] as string], { status: 200, body: AVAILABILITY_ZONE }, 'its availability zone');
  t.same(await refusals(lab, cursor, g.port), [], 'no read was refused: each carried its token');
  t.equal(
    (await curl(g.netns, '/latest/meta-data/instance-id')).status,
    401,
    'control: without a token the same read is 401',
  );
});
