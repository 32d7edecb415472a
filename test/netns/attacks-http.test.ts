// Attack matrix (issue #8), HTTP rows: malformed and oversized requests and a
// request flood against the metadata listener of a real berthd.
import t from 'tap';
import { runAttacks } from '../attacks/harness.js';
import { malformedHttp, requestFlood } from '../attacks/http.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

await runAttacks(t, [malformedHttp, requestFlood]);
