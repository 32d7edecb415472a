// Renders one caller's trees into the flat map the endpoint serves from:
// path -> bytes, content type and the policy resource. The caller's
// decisions go in here (`may`), so what it may not read is already left out
// of listings and composite documents, and serving stays one map lookup.
import type { InstanceDoc } from './doc.js';
import { EC2_VERSIONS, ec2Version } from './ec2.js';
import { berthEvents, type EventView } from './events.js';
import { NOCLOUD_PREFIX, nocloudTree } from './nocloud.js';
import { OPENSTACK_ALL, openstackVersions } from './openstack.js';
import {
  doc as composite,
  type Dir,
  dir,
  flatten,
  type Item,
  JSON_TYPE,
  leaf,
  listing,
  type May,
  type Node,
} from './tree.js';

/** Who the host resolved the caller to; `/berth/identity` shows it, for people debugging a guest. */
export interface Resolved {
  instance: string;
  mac: string;
  port: string;
  network: string;
  ip: string;
}

function berthTree(who: Resolved, events: readonly EventView[]): Dir {
  const json = (fields: Record<string, unknown>) => `${JSON.stringify(fields)}\n`;
  const { instance, mac, port, network, ip } = who;
  return dir({
    events: leaf(berthEvents(events), JSON_TYPE),
    identity: composite({ instance, mac, port, network, ip }, json, JSON_TYPE),
  });
}

export function renderAll(doc: InstanceDoc, who: Resolved, may: May): Map<string, Item> {
  const out = new Map<string, Item>();
  // Every EC2 version serves the same keys (none of berth's differ between
  // them): one render, filed under each version.
  const ec2 = new Map<string, Item>();
  flatten(ec2Version(doc), '', '', { tree: 'ec2', may, out: ec2 });
  for (const v of EC2_VERSIONS)
    for (const [path, item] of ec2) {
      if (path === '/') out.set(`/${v}`, item);
      out.set(`/${v}${path}`, item);
    }
  listing('/openstack', OPENSTACK_ALL.join('\n'), 'openstack', out);
  const os = { tree: 'openstack' as const, may, out, made: new Map<Node, { rel: string; item: Item }>() };
  for (const [v, d] of Object.entries(openstackVersions(doc))) flatten(d, `/openstack/${v}`, '', os);
  flatten(nocloudTree(doc), `/${NOCLOUD_PREFIX}`, '', { tree: 'nocloud', may, out });
  flatten(berthTree(who, doc.events ?? []), '/berth', '', { tree: 'berth', may, out });
  // The root lists the EC2 versions plus the other trees, as a directory.
  const rootListing = `${[...EC2_VERSIONS].join('\n')}\nopenstack/\n${NOCLOUD_PREFIX}/`;
  const root: Item = {
    body: Buffer.from(rootListing),
    contentType: 'text/plain',
    resource: 'index',
    tree: 'ec2',
  };
  out.set('/', root);
  out.set('', root);
  return out;
}
