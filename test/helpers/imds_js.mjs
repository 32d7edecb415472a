// The AWS SDK for JavaScript v3's own IMDS client (@aws-sdk/ec2-metadata-service),
// run inside a guest's namespace with node. It is called as its README shows:
// `request("/latest/meta-data/instance-id", {})`, which it joins to the
// endpoint URL's path ("/"), so the wire carries `//latest/...`. Node's
// http.client.request.start channel records what was really sent, without
// touching the SDK. Prints one JSON object.
import { subscribe } from 'node:diagnostics_channel';
import { MetadataService } from '@aws-sdk/ec2-metadata-service';

const sent = [];
subscribe('http.client.request.start', ({ request }) => sent.push(`${request.method} ${request.path}`));

// No retries: a 404 or 401 must show as what it is, at once.
const md = new MetadataService({ retries: 0, httpOptions: { timeout: 3000 } });
const paths = process.argv.slice(2);
const answers = {};
let token = '';
try {
  token = await md.fetchMetadataToken();
} catch (err) {
  answers.token = String(err.message);
}
for (const p of paths) {
  try {
    answers[p] = { status: 200, body: await md.request(p, {}) };
  } catch (err) {
    answers[p] = { status: err.$metadata?.httpStatusCode ?? 0, error: String(err.message) };
  }
}
// The SDK's keep-alive sockets would hold the process open.
process.stdout.write(JSON.stringify({ token: token.length > 0, answers, sent }), () => process.exit(0));
