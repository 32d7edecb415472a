// Renders one instance's three trees into the flat map the endpoint serves
// from: path -> bytes, content type and the policy resource.
import type { InstanceDoc } from './doc.js';
import { EC2_VERSIONS, ec2Version } from './ec2.js';
import { NOCLOUD_PREFIX, nocloudTree } from './nocloud.js';
import { openstackTree } from './openstack.js';
import { dir, flatten, type Item } from './tree.js';

export function renderAll(doc: InstanceDoc): Map<string, Item> {
  const out = new Map<string, Item>();
  const versions: Record<string, ReturnType<typeof ec2Version>> = {};
  const one = ec2Version(doc);
  // Every version serves the same keys; none of berth's differ between them.
  for (const v of EC2_VERSIONS) versions[v] = one;
  flatten(dir(versions, 'index'), '', 'ec2', out);
  flatten(openstackTree(doc), '/openstack', 'openstack', out);
  flatten(nocloudTree(doc), `/${NOCLOUD_PREFIX}`, 'nocloud', out);
  // The root lists the EC2 versions plus the other trees, as a directory.
  const rootListing = `${[...EC2_VERSIONS].join('\n')}\nopenstack/\n${NOCLOUD_PREFIX}/`;
  const root = { body: Buffer.from(rootListing), contentType: 'text/plain', resource: 'index', tree: 'ec2' };
  out.set('/', root);
  out.set('', root);
  return out;
}
