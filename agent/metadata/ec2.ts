// The EC2-style tree (`/<version>/meta-data/...`, `user-data`, `dynamic/...`),
// laid out the way cloud-init's EC2 crawler and the AWS SDKs read it. Which
// resource each path belongs to is resources.ts's business, not this file's.
import { formatCidr, parseCidr } from '../../hostnet/ipv4.js';
import { AVAILABILITY_ZONE, amiId, fqdn, type InstanceDoc, instanceType } from './doc.js';
import { ec2Scheduled } from './events.js';
import { type Dir, dir, JSON_TYPE, leaf, type Node } from './tree.js';

export const EC2_VERSIONS = ['2009-04-04', '2016-09-02', '2018-09-24', '2021-03-23', 'latest'] as const;

const md = (value: string) => leaf(value);

/** The key set of a tree built without one (unit harnesses): valid JWKS, no keys. */
const NO_KEYS = '{\n  "keys": []\n}\n';

/** Where guests find the cluster's key set, under /<version>/ (e.g. /latest/dynamic/berth/jwks.json). */
export const JWKS_PATH = 'dynamic/berth/jwks.json';

/**
 * Where guests mint audience-bound identity tokens, under /<version>/
 * (/latest/dynamic/berth/identity?audience=A), next to the key set that verifies them.
 */
export const IDENTITY_TOKEN_PATH = 'dynamic/berth/identity';
const IDENTITY_TOKEN_USAGE = 'GET this path with ?audience=<the service that will verify the token>\n';

function subnetCidr(doc: InstanceDoc): string {
  const c = parseCidr(doc.network.subnet);
  return c ? formatCidr(c) : doc.network.subnet;
}

function publicKeys(doc: InstanceDoc): Dir | undefined {
  if (doc.sshKeys.length === 0) return undefined;
  const children: Record<string, Node> = {};
  doc.sshKeys.forEach((k, i) => {
    children[String(i)] = dir({ 'openssh-key': md(k.key) });
  });
  const listing = doc.sshKeys.map((k, i) => `${i}=${k.name}`).join('\n');
  return dir(children, listing);
}

function tags(doc: InstanceDoc): Dir | undefined {
  const keys = Object.keys(doc.meta).sort();
  if (keys.length === 0) return undefined;
  const instance: Record<string, Node> = {};
  for (const k of keys) instance[k] = md(doc.meta[k] ?? '');
  return dir({ instance: dir(instance) });
}

export function metaData(doc: InstanceDoc): Dir {
  const cidr = subnetCidr(doc);
  const iface = dir({
    'device-number': md('0'),
    'interface-id': md(doc.port),
    'local-hostname': md(fqdn(doc)),
    'local-ipv4s': md(doc.ip),
    mac: md(doc.mac),
    'subnet-ipv4-cidr-block': md(cidr),
    'vpc-ipv4-cidr-block': md(cidr),
    'vpc-ipv4-cidr-blocks': md(cidr),
  });
  return dir({
    'ami-id': md(amiId(doc)),
    'ami-launch-index': md('0'),
    // As on EC2, `[]` when nothing is scheduled.
    events: dir({ maintenance: dir({ scheduled: leaf(ec2Scheduled(doc.events ?? []), JSON_TYPE) }) }),
    hostname: md(fqdn(doc)),
    'instance-id': md(doc.id),
    'instance-type': md(instanceType(doc)),
    'local-hostname': md(fqdn(doc)),
    'local-ipv4': md(doc.ip),
    mac: md(doc.mac),
    network: dir({ interfaces: dir({ macs: dir({ [doc.mac]: iface }) }) }),
    placement: dir({ 'availability-zone': md(AVAILABILITY_ZONE), region: md(doc.hostId) }),
    'public-keys': publicKeys(doc),
    'reservation-id': md(`r-${doc.id.replace(/^i-/, '')}`),
    tags: tags(doc),
  });
}

/** One version's tree: `meta-data/`, `dynamic/` and, when there is any, `user-data`. */
export function ec2Version(doc: InstanceDoc): Dir {
  return dir({
    dynamic: dir({
      // Every cluster host's verification key (JWKS), so a guest can check a peer's document.
      berth: dir({
        // What a GET without an audience would say; the HTTP layer mints the token itself.
        identity: leaf(IDENTITY_TOKEN_USAGE),
        'jwks.json': leaf(doc.keySet ?? NO_KEYS, JSON_TYPE),
      }),
      'instance-identity': dir({
        document: leaf(doc.identity.document, JSON_TYPE),
        signature: leaf(doc.identity.signature),
      }),
    }),
    'meta-data': metaData(doc),
    'user-data': doc.userData ? leaf(doc.userData, 'application/octet-stream') : undefined,
  });
}
