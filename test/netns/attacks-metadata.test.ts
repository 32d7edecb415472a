// Attack matrix (issues #8, #12 and #14), metadata identity rows: an unknown
// port, a moved MAC, another instance's token, X-Forwarded-For on a token PUT
// and on any write, an identity token for a forged request, a token-less POST
// where tokens are required, a DNS-rebinding Host header, a deny checked on
// every tree, a deny tried under other spellings of its path,
// If-None-Match on a denied path, a maintenance notice acked by another
// instance, and wait_for_change on (and across) a deny, from netns guests
// against a real berthd.
import t from 'tap';
import { runAttacks } from '../attacks/harness.js';
import { macMoved, metadataUnknownPort } from '../attacks/identity.js';
import {
  denyBySpelling,
  denyEveryTree,
  dnsRebinding,
  etagOnDenied,
  eventAckForeign,
  identityTokenForged,
  tokenlessPost,
  tokenOtherInstance,
  waitOnDenied,
  xffOnTokenPut,
  xffOnWrite,
} from '../attacks/metadata.js';
import { isRoot } from '../helpers/hostnet_lab.js';

if (!isRoot()) {
  t.plan(0, 'needs root (real bridges, veths, network namespaces and nftables)');
  process.exit(0);
}

await runAttacks(t, [
  metadataUnknownPort,
  macMoved,
  tokenOtherInstance,
  xffOnTokenPut,
  xffOnWrite,
  identityTokenForged,
  tokenlessPost,
  dnsRebinding,
  denyEveryTree,
  denyBySpelling,
  etagOnDenied,
  eventAckForeign,
  waitOnDenied,
]);
