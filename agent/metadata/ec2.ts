// The EC2-style tree (`/<version>/meta-data/...`, `user-data`, `dynamic/...`),
// laid out the way cloud-init's EC2 crawler and the AWS SDKs read it.
import { formatCidr, parseCidr } from '../../hostnet/ipv4.js';
import { AVAILABILITY_ZONE, amiId, fqdn, type InstanceDoc, instanceType } from './doc.js';
import { type Dir, dir, JSON_TYPE, leaf, type Node } from './tree.js';

export const EC2_VERSIONS = ['2009-04-04', '2016-09-02', '2018-09-24', '2021-03-23', 'latest'] as const;

const md = (value: string, key: string) => leaf(value, `meta-data/${key}`);

function subnetCidr(doc: InstanceDoc): string {
  const c = parseCidr(doc.network.subnet);
  return c ? formatCidr(c) : doc.network.subnet;
}

function publicKeys(doc: InstanceDoc): Dir | undefined {
  if (doc.sshKeys.length === 0) return undefined;
  const children: Record<string, Node> = {};
  doc.sshKeys.forEach((k, i) => {
    children[String(i)] = dir({ 'openssh-key': md(k.key, 'public-keys') }, 'meta-data/public-keys');
  });
  const listing = doc.sshKeys.map((k, i) => `${i}=${k.name}`).join('\n');
  return dir(children, 'meta-data/public-keys', listing);
}

function tags(doc: InstanceDoc): Dir | undefined {
  const keys = Object.keys(doc.meta).sort();
  if (keys.length === 0) return undefined;
  const instance: Record<string, Node> = {};
  for (const k of keys) instance[k] = md(doc.meta[k] ?? '', 'tags');
  return dir({ instance: dir(instance, 'meta-data/tags') }, 'meta-data/tags');
}

export function metaData(doc: InstanceDoc): Dir {
  const cidr = subnetCidr(doc);
  const iface = dir(
    {
      'device-number': md('0', 'network'),
      'interface-id': md(doc.port, 'network'),
      'local-hostname': md(fqdn(doc), 'network'),
      'local-ipv4s': md(doc.ip, 'network'),
      mac: md(doc.mac, 'network'),
      'subnet-ipv4-cidr-block': md(cidr, 'network'),
      'vpc-ipv4-cidr-block': md(cidr, 'network'),
      'vpc-ipv4-cidr-blocks': md(cidr, 'network'),
    },
    'meta-data/network',
  );
  return dir(
    {
      'ami-id': md(amiId(doc), 'ami-id'),
      'ami-launch-index': md('0', 'ami-launch-index'),
      hostname: md(fqdn(doc), 'hostname'),
      'instance-id': md(doc.id, 'instance-id'),
      'instance-type': md(instanceType(doc), 'instance-type'),
      'local-hostname': md(fqdn(doc), 'local-hostname'),
      'local-ipv4': md(doc.ip, 'local-ipv4'),
      mac: md(doc.mac, 'mac'),
      network: dir(
        { interfaces: dir({ macs: dir({ [doc.mac]: iface }, 'meta-data/network') }, 'meta-data/network') },
        'meta-data/network',
      ),
      placement: dir(
        { 'availability-zone': md(AVAILABILITY_ZONE, 'placement'), region: md(doc.hostId, 'placement') },
        'meta-data/placement',
      ),
      'public-keys': publicKeys(doc),
      'reservation-id': md(`r-${doc.id.replace(/^i-/, '')}`, 'reservation-id'),
      tags: tags(doc),
    },
    'meta-data',
  );
}

/** One version's tree: `meta-data/`, `dynamic/` and, when there is any, `user-data`. */
export function ec2Version(doc: InstanceDoc): Dir {
  return dir(
    {
      dynamic: dir(
        {
          'instance-identity': dir(
            {
              document: leaf(doc.identity.document, 'identity-document', JSON_TYPE),
              signature: leaf(doc.identity.signature, 'identity-document'),
            },
            'identity-document',
          ),
        },
        'identity-document',
      ),
      'meta-data': metaData(doc),
      'user-data': doc.userData ? leaf(doc.userData, 'user-data', 'application/octet-stream') : undefined,
    },
    'index',
  );
}
