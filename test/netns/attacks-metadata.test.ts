// Attack matrix (issue #8), metadata identity rows: an unknown port, a moved
// MAC, another instance's token, X-Forwarded-For on a token PUT and a
// DNS-rebinding Host header, from netns guests against a real berthd.
import t from 'tap';
import { runAttacks } from '../attacks/harness.js';
import { macMoved, metadataUnknownPort } from '../attacks/identity.js';
import { dnsRebinding, tokenOtherInstance, xffOnTokenPut } from '../attacks/metadata.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

await runAttacks(t, [metadataUnknownPort, macMoved, tokenOtherInstance, xffOnTokenPut, dnsRebinding]);
