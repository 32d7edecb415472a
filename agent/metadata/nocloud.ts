// The NoCloud-net tree: a seed URL (`ds=nocloud-net;s=http://169.254.169.254/nocloud/`
// in the SMBIOS serial) under which cloud-init fetches meta-data, user-data,
// vendor-data and network-config.
import { stringify } from 'yaml';
import { parseCidr } from '../../hostnet/ipv4.js';
import { fqdn, type InstanceDoc } from './doc.js';
import { doc as composite, type Dir, type Doc, dir, leaf } from './tree.js';

export const NOCLOUD_PREFIX = 'nocloud';
export const NOCLOUD_SEED = 'ds=nocloud-net;s=http://169.254.169.254/nocloud/';

const YAML_TYPE = 'text/yaml';

/** meta-data: one field per value, so a caller's denied values are left out of it. */
export function nocloudMetaData(doc: InstanceDoc): Doc {
  const fields = {
    'instance-id': doc.id,
    'local-hostname': fqdn(doc),
    'public-keys': doc.sshKeys.length > 0 ? doc.sshKeys.map((k) => k.key) : undefined,
  };
  return composite(fields, (kept) => stringify(kept), YAML_TYPE);
}

/** Netplan-style v2, matched on the MAC the host assigned. */
export function nocloudNetworkConfig(doc: InstanceDoc): string {
  const cidr = parseCidr(doc.network.subnet);
  return stringify({
    version: 2,
    ethernets: {
      nic0: {
        match: { macaddress: doc.mac },
        addresses: [`${doc.ip}/${cidr?.prefix ?? 24}`],
        mtu: doc.network.mtu,
        ...(doc.network.gateway ? { routes: [{ to: '0.0.0.0/0', via: doc.network.gateway }] } : {}),
        ...(doc.network.dns.length > 0 || doc.network.domain
          ? {
              nameservers: {
                addresses: doc.network.dns,
                ...(doc.network.domain ? { search: [doc.network.domain] } : {}),
              },
            }
          : {}),
      },
    },
  });
}

export function nocloudTree(doc: InstanceDoc): Dir {
  return dir({
    'meta-data': nocloudMetaData(doc),
    'network-config': leaf(nocloudNetworkConfig(doc), YAML_TYPE),
    // cloud-init wants a user-data file to exist; empty means "nothing to do".
    'user-data': leaf(doc.userData ?? '', 'application/octet-stream'),
    'vendor-data': leaf(doc.vendorData ?? '', 'application/octet-stream'),
  });
}
