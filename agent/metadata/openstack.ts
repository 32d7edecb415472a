// The OpenStack-style tree (`/openstack/<version>/...`), following Nova's
// metadata formats as cloud-init's OpenStack reader expects them.
import { randomBytes } from 'node:crypto';
import { intToIp, netmaskOf, parseCidr } from '../../hostnet/ipv4.js';
import { AVAILABILITY_ZONE, fqdn, type InstanceDoc, PROJECT_ID } from './doc.js';
import { doc as composite, type Dir, type Doc, dir, JSON_TYPE, leaf } from './tree.js';

/** Nova's dated versions that cloud-init knows, oldest first; `latest` is added. */
export const OPENSTACK_VERSIONS = [
  '2012-08-10',
  '2013-04-04',
  '2013-10-17',
  '2015-10-15',
  '2016-06-30',
  '2016-10-06',
  '2017-02-22',
  '2018-08-27',
] as const;

/** Nova: the password may be posted once, in at most 4 chunks of 255 bytes. */
export const PASSWORD_MAX_BYTES = 4 * 255;

const json = (value: unknown) => `${JSON.stringify(value)}\n`;

/** meta_data.json: one field per value, so a caller's denied values are left out of it. */
export function metaDataJson(doc: InstanceDoc, seed: Buffer = randomBytes(512)): Doc {
  const fields = {
    uuid: doc.uuid,
    name: doc.name,
    hostname: fqdn(doc),
    launch_index: 0,
    availability_zone: AVAILABILITY_ZONE,
    project_id: PROJECT_ID,
    meta: { ...doc.meta, ...(doc.role ? { role: doc.role } : {}) },
    public_keys: Object.fromEntries(doc.sshKeys.map((k) => [k.name, k.key])),
    keys: doc.sshKeys.map((k) => ({ name: k.name, type: 'ssh', data: k.key })),
    random_seed: seed.toString('base64'),
    devices: [],
  };
  return composite(fields, json, JSON_TYPE);
}

export function networkDataJson(doc: InstanceDoc): unknown {
  const cidr = parseCidr(doc.network.subnet);
  const link = doc.port;
  const routes = doc.network.gateway
    ? [{ network: '0.0.0.0', netmask: '0.0.0.0', gateway: doc.network.gateway }]
    : [];
  const dns = doc.network.dns.map((address) => ({ type: 'dns', address }));
  return {
    links: [{ id: link, vif_id: link, type: 'phy', ethernet_mac_address: doc.mac, mtu: doc.network.mtu }],
    networks: [
      {
        id: 'network0',
        link,
        type: 'ipv4',
        ip_address: doc.ip,
        netmask: cidr ? netmaskOf(cidr.prefix) : '255.255.255.0',
        routes,
        network_id: doc.network.name,
        ...(cidr ? { network: intToIp(cidr.network) } : {}),
        services: dns,
      },
    ],
    services: dns,
  };
}

function vendorDataJson(doc: InstanceDoc): unknown {
  if (!doc.vendorData) return {};
  const text = doc.vendorData.toString('utf8');
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed;
  } catch {
    // Not JSON: cloud-config or a script, which Nova's static vendordata carries under "cloud-init".
  }
  return { 'cloud-init': text };
}

/** Every version served, `latest` last; Nova lists them bare (no trailing `/`), and cloud-init matches them exactly. */
export const OPENSTACK_ALL: readonly string[] = [...OPENSTACK_VERSIONS, 'latest'];

/**
 * Every version's directory. The files are made once and shared: versions
 * differ only in which files they have, and one caller's render then writes
 * each file's bytes once (and draws one random seed).
 */
export function openstackVersions(doc: InstanceDoc): Record<string, Dir> {
  const files = {
    'meta_data.json': metaDataJson(doc),
    'network_data.json': leaf(json(networkDataJson(doc)), JSON_TYPE),
    password: leaf(doc.password ?? ''),
    user_data: doc.userData ? leaf(doc.userData, 'application/octet-stream') : undefined,
    'vendor_data.json': leaf(json(vendorDataJson(doc)), JSON_TYPE),
    'vendor_data2.json': leaf(json({}), JSON_TYPE),
  };
  const out: Record<string, Dir> = {};
  for (const version of OPENSTACK_ALL) {
    const after = (v: string) => version === 'latest' || version >= v;
    out[version] = dir({
      'meta_data.json': files['meta_data.json'],
      'network_data.json': after('2015-10-15') ? files['network_data.json'] : undefined,
      password: after('2013-04-04') ? files.password : undefined,
      user_data: files.user_data,
      'vendor_data.json': after('2013-10-17') ? files['vendor_data.json'] : undefined,
      'vendor_data2.json': after('2016-10-06') ? files['vendor_data2.json'] : undefined,
    });
  }
  return out;
}
