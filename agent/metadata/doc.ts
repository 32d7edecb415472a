// Everything the trees are built from, for one instance: berthd assembles it
// once per caller and the endpoint renders it. Plain data, so it crosses the
// IPC channel as it is (Buffers included).
import type { EventView } from './events.js';

export interface NetworkFacts {
  name: string;
  subnet: string;
  gateway?: string;
  mtu: number;
  dns: string[];
  domain?: string;
}

export interface SshKey {
  name: string;
  key: string;
}

export interface InstanceDoc {
  id: string;
  uuid: string;
  name: string;
  hostname: string;
  runtime: string;
  network: NetworkFacts;
  mac: string;
  ip: string;
  port: string;
  sshKeys: SshKey[];
  meta: Record<string, string>;
  role?: string;
  imageSha256?: string;
  userData?: Buffer;
  vendorData?: Buffer;
  password?: string;
  hostId: string;
  createdAt: string;
  /**
   * The JWKS document (RFC 8037 OKP keys, kid = host id) of every host whose
   * signature verifies now: live, lost and recently forgotten. Built by
   * berthd from its registry copy; absent in trees built without one.
   */
  keySet?: string;
  /** Maintenance notices that apply to the instance (its own and the host's drain), by start. */
  events?: EventView[];
  /** The identity document and its Ed25519 signature (base64), made by berthd. */
  identity: { document: string; signature: string };
}

export const AVAILABILITY_ZONE = 'berth';
export const PROJECT_ID = 'berth';

export function instanceType(doc: InstanceDoc): string {
  return `berth.${doc.runtime}`;
}

export function amiId(doc: InstanceDoc): string {
  return doc.imageSha256 ? `sha256:${doc.imageSha256}` : `berth-${doc.runtime}`;
}

export function fqdn(doc: InstanceDoc): string {
  return doc.network.domain ? `${doc.hostname}.${doc.network.domain}` : doc.hostname;
}

/** The signed document's fields: AWS's names plus berth's identity facts. */
export function identityDocument(doc: Omit<InstanceDoc, 'identity'>, now = new Date()): string {
  return `${JSON.stringify(
    {
      accountId: PROJECT_ID,
      architecture: 'x86_64',
      availabilityZone: AVAILABILITY_ZONE,
      imageId: doc.imageSha256 ? `sha256:${doc.imageSha256}` : null,
      imageSha256: doc.imageSha256 ?? null,
      instanceId: doc.id,
      instanceUuid: doc.uuid,
      instanceType: `berth.${doc.runtime}`,
      mac: doc.mac,
      privateIp: doc.ip,
      network: doc.network.name,
      hostId: doc.hostId,
      pendingTime: doc.createdAt,
      signedAt: now.toISOString(),
      region: doc.hostId,
      version: '2017-09-30',
    },
    null,
    2,
  )}\n`;
}
