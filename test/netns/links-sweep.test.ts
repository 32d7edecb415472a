// sweepOrphans on the real host: owned leftovers go, desired and foreign objects stay.
import t from 'tap';
import { osCommandRunner } from '../../base/command.js';
import { ensureBridge } from '../../hostnet/links/bridge.js';
import { IpLinkOps } from '../../hostnet/links/ip-link-ops.js';
import { ensureNetnsGuest } from '../../hostnet/links/netns-guest.js';
import { listOwned, sweepOrphans } from '../../hostnet/links/sweep.js';
import { Names } from '../../hostnet/names.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root (real bridges, veths and network namespaces)');
  process.exit(0);
}

// A sub-prefix of this helper's "lk": the sweep below removes every orphan it owns,
// so it must own nothing that another link test running in parallel creates.
const names = new Names('lks');
const ops = new IpLinkOps();
const sh = (...argv: string[]) => osCommandRunner.run(argv);

const keptBridge = names.bridge('kept');
const leftoverBridge = names.bridge('gone');
const leftover = {
  netns: names.guestNetns('old'),
  port: names.port('0ld0ld0l', 0),
  bridge: keptBridge,
  mac: '02:00:00:62:00:01',
  mtu: 1500,
};
const kept = {
  netns: names.guestNetns('live'),
  port: names.port('11ve11ve', 0),
  bridge: keptBridge,
  mac: '02:00:00:62:00:02',
  mtu: 1500,
};
/** An owned-looking root veth whose namespace is already gone. */
const strayVeth = names.endpointVeth('stray');
/** Foreign objects: near the prefix, but not owned by it. */
const foreignNetns = 'zz-lk-keep';
const foreignLink = `${names.prefix}keep0`;

t.teardown(async () => {
  for (const ns of [leftover.netns, kept.netns, foreignNetns]) await ops.deleteNetns(ns).catch(() => {});
  for (const l of [leftover.port, kept.port, strayVeth, foreignLink, leftoverBridge, keptBridge]) {
    await ops.deleteLink(l).catch(() => {});
  }
});

t.test('sweepOrphans removes owned leftovers and leaves the rest', async (t) => {
  t.notOk(names.owns(foreignLink), 'the foreign link is not owned');
  t.notOk(names.ownsNetns(foreignNetns), 'the foreign namespace is not owned');
  await ensureBridge(ops, keptBridge, { mtu: 1500 });
  await ensureBridge(ops, leftoverBridge, { mtu: 1500 });
  await ensureNetnsGuest(ops, leftover);
  await ensureNetnsGuest(ops, kept);
  await sh('ip', 'link', 'add', strayVeth, 'type', 'veth', 'peer', 'name', `${names.prefix}xstray0`);
  await sh('ip', 'link', 'add', foreignLink, 'type', 'veth', 'peer', 'name', `${foreignLink}x`);
  await ops.addNetns(foreignNetns);

  const owned = await listOwned(ops, names);
  t.same(
    owned.links.map((l) => l.name).sort(),
    [keptBridge, leftoverBridge, leftover.port, kept.port, strayVeth].sort(),
    'listOwned sees exactly the owned links',
  );
  t.same(owned.netns.sort(), [leftover.netns, kept.netns].sort());

  const result = await sweepOrphans(ops, names, { links: [keptBridge, kept.port], netns: [kept.netns] });
  t.same(result.removedNetns, [leftover.netns]);
  t.same(result.removedLinks.sort(), [leftoverBridge, leftover.port, strayVeth].sort());

  const links = (await ops.listLinks()).map((l) => l.name);
  const netns = await ops.listNetns();
  for (const gone of [leftoverBridge, leftover.port, strayVeth])
    t.notOk(links.includes(gone), `${gone} removed`);
  t.notOk(netns.includes(leftover.netns), 'leftover namespace removed');
  for (const stays of [keptBridge, kept.port, foreignLink]) t.ok(links.includes(stays), `${stays} kept`);
  t.ok(netns.includes(kept.netns), 'desired namespace kept');
  t.ok(netns.includes(foreignNetns), 'foreign namespace kept');
  t.equal((await ops.getLink('eth0', kept.netns))?.mac, kept.mac, 'the desired guest still works');

  const again = await sweepOrphans(ops, names, { links: [keptBridge, kept.port], netns: [kept.netns] });
  t.same(again, { removedLinks: [], removedNetns: [] }, 'a second sweep finds nothing');
});
