// The AWS SDK's IMDS client against berth: botocore (the SDK for Python,
// as installed on this machine kind's Python) fetches an IMDSv2 token, reads
// the instance id with it and derives the region from the availability zone,
// from inside a guest whose instance requires tokens.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { AVAILABILITY_ZONE } from '../../agent/metadata/doc.js';
import { isRoot, startLab } from '../helpers/hostnet_lab.js';
import { mdGuest } from '../helpers/metadata_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

const SCRIPT = fileURLToPath(new URL('../helpers/imds_sdk.py', import.meta.url));

/** The Python on PATH (pyenv's here), which carries boto3/botocore; /usr/bin/python3 does not. */
function runSdk(netns: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', netns, 'python3', SCRIPT], { encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

t.test("botocore's IMDS client reads its instance id and region with an IMDSv2 token", async (t) => {
  const lab = await startLab(t);
  await lab.network('sdk', '10.74.0.0/24');
  const g = await mdGuest(lab, 'sdk1', 'sdk', ['--tokens', 'required']);
  const r = await runSdk(g.netns);
  t.equal(r.code, 0, r.stderr);
  const got = JSON.parse(r.stdout) as {
    token: boolean;
    instance: string;
    region: string;
    untokened: unknown;
  };
  t.equal(got.token, true, 'botocore obtained a token with its PUT');
  t.equal(got.instance, g.id, 'its own instance id, read with the token');
  t.equal(got.region, AVAILABILITY_ZONE.slice(0, -1), 'the region botocore derives from the zone');
  t.not(got.untokened, 200, 'without a token the same read is refused (tokens required)');
});
