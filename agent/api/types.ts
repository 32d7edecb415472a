// Wire types of the admin API, shared by berthd's routes, the client and berthctl.
import { type Static, Type } from 'typebox';

export { API_PREFIX } from './prefix.js';

export const ErrorBody = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    field: Type.Optional(Type.String()),
  }),
});
export type ErrorBody = Static<typeof ErrorBody>;

export const Status = Type.Object({
  version: Type.String(),
  host_id: Type.String(),
  pid: Type.Integer(),
  uptime: Type.Number({ description: 'seconds since berthd started' }),
  started_at: Type.String(),
  state_dir: Type.String(),
  socket: Type.String(),
  config_source: Type.String(),
  counts: Type.Object({
    networks: Type.Integer(),
    instances: Type.Integer(),
    leases: Type.Integer(),
  }),
  endpoints: Type.Array(
    Type.Object({
      network: Type.String(),
      pid: Type.Optional(Type.Integer()),
      ready: Type.Boolean(),
      adopted: Type.Boolean({ description: 'found running (left by the previous berthd) and taken over' }),
      restarts: Type.Integer(),
    }),
  ),
  orphan_domains: Type.Array(Type.String(), {
    description: "libvirt domains with berth's tag and this prefix but no instance record; left alone",
  }),
});
export type Status = Static<typeof Status>;

export const AuditRecord = Type.Object(
  {
    seq: Type.Integer(),
    time: Type.String(),
    event: Type.String(),
    outcome: Type.Union([Type.Literal('refused'), Type.Literal('allowed'), Type.Literal('info')]),
    reason: Type.String(),
    mac: Type.Optional(Type.String()),
    port: Type.Optional(Type.String()),
    ip: Type.Optional(Type.String()),
    network: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String()),
    identity: Type.Optional(Type.String()),
    path: Type.Optional(Type.String()),
    peer: Type.Optional(
      Type.Object(
        { pid: Type.Integer(), uid: Type.Integer(), gid: Type.Integer() },
        { description: "the admin socket's peer process, for admin.* records" },
      ),
    ),
    detail: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type AuditRecord = Static<typeof AuditRecord>;

export const AuditQuery = Type.Object(
  {
    after: Type.Optional(Type.Integer({ minimum: 0 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })),
    outcome: Type.Optional(
      Type.Union([Type.Literal('refused'), Type.Literal('allowed'), Type.Literal('info')]),
    ),
    event: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
export type AuditQuery = Static<typeof AuditQuery>;

export const AuditList = Type.Object({ records: Type.Array(AuditRecord) });
export type AuditList = Static<typeof AuditList>;

/** GET /audit/follow: newline-delimited AuditRecords, kept open; replays from `after` when given. */
export const AuditFollowQuery = Type.Object(
  {
    after: Type.Optional(Type.Integer({ minimum: 0 })),
    outcome: Type.Optional(
      Type.Union([Type.Literal('refused'), Type.Literal('allowed'), Type.Literal('info')]),
    ),
    event: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
export type AuditFollowQuery = Static<typeof AuditFollowQuery>;

export const NetworkName = Type.String({
  pattern: '^[a-z][a-z0-9-]{0,30}$',
  description: 'lower case, digits and -, at most 31',
});
export const InstanceName = Type.String({
  pattern: '^[a-z][a-z0-9-]{0,62}$',
  description: 'lower case, digits and -, at most 63',
});

export const NetworkCreate = Type.Object(
  {
    name: NetworkName,
    subnet: Type.String(),
    gateway: Type.Optional(Type.String()),
    vlan: Type.Optional(Type.Integer({ minimum: 1, maximum: 4094 })),
    uplink: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{1,15}$' })),
    mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9216 })),
    dns: Type.Optional(Type.Array(Type.String(), { maxItems: 8 })),
    domain: Type.Optional(Type.String({ pattern: '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$' })),
  },
  { additionalProperties: false },
);
export type NetworkCreate = Static<typeof NetworkCreate>;

export const Usage = Type.Object({
  size: Type.Integer(),
  assigned: Type.Integer(),
  quarantined: Type.Integer(),
  free: Type.Integer(),
});

export const GuardDrop = Type.Object({
  port: Type.String(),
  reason: Type.String(),
  packets: Type.Integer(),
  bytes: Type.Integer(),
});

export const Network = Type.Object({
  name: Type.String(),
  subnet: Type.String(),
  gateway: Type.Union([Type.String(), Type.Null()]),
  vlan: Type.Union([Type.Integer(), Type.Null()]),
  uplink: Type.Union([Type.String(), Type.Null()]),
  mtu: Type.Integer(),
  dns: Type.Array(Type.String()),
  domain: Type.Union([Type.String(), Type.Null()]),
  source: Type.Union([Type.Literal('config'), Type.Literal('api')]),
  created_at: Type.String(),
  bridge: Type.String(),
  endpoint: Type.String(),
  service_ip: Type.String(),
  ips: Usage,
  guard_drops: Type.Array(GuardDrop),
});
export type Network = Static<typeof Network>;

export const NetworkList = Type.Object({ networks: Type.Array(Network) });
export type NetworkList = Static<typeof NetworkList>;

export const Nic = Type.Object({
  network: Type.String(),
  mac: Type.String(),
  ip: Type.String(),
  port: Type.String(),
});
export type Nic = Static<typeof Nic>;

export const Runtime = Type.Union([Type.Literal('netns'), Type.Literal('libvirt')]);
export const TokensMode = Type.Union([Type.Literal('optional'), Type.Literal('required')]);
export const BlobInfo = Type.Object({ bytes: Type.Integer(), sha256: Type.String() });

/** A role, as policies and security groups name it (`role:<role>`). */
export const ROLE_PATTERN = '^[a-z][a-z0-9._-]{0,62}$';

export const InstanceCreate = Type.Object(
  {
    name: InstanceName,
    network: NetworkName,
    runtime: Type.Optional(Runtime),
    // Compute: the image (name or sha256) is required for the libvirt runtime.
    image: Type.Optional(Type.String({ maxLength: 64 })),
    vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    memory_mib: Type.Optional(Type.Integer({ minimum: 64, maximum: 1048576 })),
    // Metadata inputs (metadata issue).
    user_data: Type.Optional(Type.String({ maxLength: 90_000, description: 'base64' })),
    vendor_data: Type.Optional(Type.String({ maxLength: 90_000, description: 'base64' })),
    ssh_keys: Type.Optional(
      Type.Array(Type.Object({ name: Type.String(), key: Type.String({ maxLength: 16384 }) }), {
        maxItems: 32,
      }),
    ),
    role: Type.Optional(Type.String({ pattern: ROLE_PATTERN })),
    secgroups: Type.Optional(Type.Array(Type.String({ maxLength: 31 }), { maxItems: 16 })),
    tokens: Type.Optional(TokensMode),
    meta: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 4096 }), { maxProperties: 64 })),
  },
  { additionalProperties: false },
);
export type InstanceCreate = Static<typeof InstanceCreate>;

export const Instance = Type.Object({
  id: Type.String(),
  uuid: Type.String(),
  name: Type.String(),
  runtime: Runtime,
  state: Type.Union([
    Type.Literal('creating'),
    Type.Literal('running'),
    Type.Literal('stopped'),
    Type.Literal('deleting'),
    Type.Literal('error'),
    // A libvirt instance whose domain libvirt no longer knows.
    Type.Literal('missing'),
  ]),
  created_at: Type.String(),
  netns: Type.Optional(Type.String()),
  // Compute (libvirt runtime).
  image: Type.Optional(Type.String()),
  image_sha256: Type.Optional(Type.String()),
  domain: Type.Optional(Type.String()),
  console_log: Type.Optional(Type.String()),
  vcpus: Type.Optional(Type.Integer()),
  memory_mib: Type.Optional(Type.Integer()),
  nics: Type.Array(Nic),
  // Metadata inputs; user-data and vendor-data only by size and hash.
  ssh_keys: Type.Optional(Type.Array(Type.Object({ name: Type.String(), key: Type.String() }))),
  role: Type.Optional(Type.String()),
  secgroups: Type.Optional(Type.Array(Type.String())),
  tokens: Type.Optional(TokensMode),
  meta: Type.Optional(Type.Record(Type.String(), Type.String())),
  user_data: Type.Optional(BlobInfo),
  vendor_data: Type.Optional(BlobInfo),
  // Bumped by every change to what the guest's metadata is made of; 1 at create (absent: created before it existed).
  metadata_version: Type.Optional(Type.Integer()),
});
export type Instance = Static<typeof Instance>;

export const InstanceList = Type.Object({ instances: Type.Array(Instance) });
export type InstanceList = Static<typeof InstanceList>;

export const ExecRequest = Type.Object(
  { argv: Type.Array(Type.String(), { minItems: 1, maxItems: 256 }) },
  { additionalProperties: false },
);
export type ExecRequest = Static<typeof ExecRequest>;
export const ExecResult = Type.Object({ code: Type.Integer(), stdout: Type.String(), stderr: Type.String() });
export type ExecResult = Static<typeof ExecResult>;

export const PoolUsage = Type.Object({
  pools: Type.Array(Type.Object({ prefix: Type.String(), ...Usage.properties })),
});
export type PoolUsage = Static<typeof PoolUsage>;

export const ResolveQuery = Type.Object(
  {
    ip: Type.Optional(Type.String({ format: 'ipv4' })),
    mac: Type.Optional(Type.String({ pattern: '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$' })),
  },
  { additionalProperties: false },
);
export type ResolveQuery = Static<typeof ResolveQuery>;

export const ResolveAnswer = Type.Object({
  ok: Type.Boolean(),
  mac: Type.Optional(Type.String()),
  port: Type.Optional(Type.String()),
  instance: Type.Optional(Type.String()),
  reason: Type.Optional(
    Type.Union([
      Type.Literal('ip-not-assigned'),
      Type.Literal('no-neighbour'),
      Type.Literal('neighbour-not-pinned'),
      Type.Literal('mac-not-on-port'),
      Type.Literal('mac-wrong-port'),
      Type.Literal('port-not-owned'),
    ]),
  ),
});
export type ResolveAnswer = Static<typeof ResolveAnswer>;

export const LeaseQuery = Type.Object(
  { network: Type.Optional(NetworkName) },
  { additionalProperties: false },
);
export type LeaseQuery = Static<typeof LeaseQuery>;

export const Lease = Type.Object({
  network: Type.String(),
  mac: Type.String(),
  ip: Type.String(),
  instance: Type.String(),
  instance_name: Type.Optional(Type.String()),
  expires: Type.String({ description: 'ISO time: lease end, release time, or end of a decline hold' }),
  state: Type.Union([
    Type.Literal('bound'),
    Type.Literal('expired'),
    Type.Literal('released'),
    Type.Literal('declined'),
  ]),
});
export type Lease = Static<typeof Lease>;

export const LeaseList = Type.Object({ leases: Type.Array(Lease) });
export type LeaseList = Static<typeof LeaseList>;

export const Policy = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z][a-z0-9-]{0,62}$' }),
    description: Type.Optional(Type.String({ maxLength: 500 })),
    identities: Type.Array(Type.String({ maxLength: 200 }), {
      maxItems: 256,
      description: '*, instance:<id|name>, mac:<mac>, mac:<mac>/<bits>, image:<sha256>, role:<name>',
    }),
    allow: Type.Array(Type.String({ maxLength: 200 }), {
      maxItems: 64,
      description: 'read:<resource>, write:<resource>',
    }),
    deny: Type.Array(Type.String({ maxLength: 200 }), { maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type Policy = Static<typeof Policy>;
export const PolicyList = Type.Object({ policies: Type.Array(Policy) });
export type PolicyList = Static<typeof PolicyList>;

// Security groups (issue 15): named sets of ACCEPT rules, by the caller's observed identity.
export const SecGroupName = Type.String({
  pattern: '^[a-z][a-z0-9-]{0,30}$',
  description: 'lower case, digits and -, at most 31',
});
export const SecGroupProto = Type.Union([
  Type.Literal('tcp'),
  Type.Literal('udp'),
  Type.Literal('icmp'),
  Type.Literal('any'),
]);
export const SecGroupRuleAdd = Type.Object(
  {
    proto: SecGroupProto,
    /** `P` or `P-Q`; only with tcp or udp. */
    port: Type.Optional(Type.String({ maxLength: 11 })),
    /** role:R, group:G, instance:<id|name>, image:<sha256> or an IPv4 CIDR. */
    from: Type.String({ maxLength: 200 }),
  },
  { additionalProperties: false },
);
export type SecGroupRuleAdd = Static<typeof SecGroupRuleAdd>;
export const SecGroupRule = Type.Object({
  id: Type.String({ description: 'sr-<8 hex>, stable' }),
  proto: SecGroupProto,
  ports: Type.Optional(Type.Object({ from: Type.Integer(), to: Type.Integer() })),
  from: Type.String(),
});
export type SecGroupRule = Static<typeof SecGroupRule>;
export const SecGroupCreate = Type.Object(
  {
    name: SecGroupName,
    description: Type.Optional(Type.String({ maxLength: 500 })),
    /** When set, only root or a caller in one of these gids may put an instance in the group. */
    join_gids: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 32 })),
  },
  { additionalProperties: false },
);
export type SecGroupCreate = Static<typeof SecGroupCreate>;
/** A stored group: `secgroup/<name>` in the store (cluster-scoped in cluster mode). */
export const SecGroup = Type.Object({
  name: SecGroupName,
  description: Type.Optional(Type.String()),
  join_gids: Type.Optional(Type.Array(Type.Integer())),
  rules: Type.Array(SecGroupRule),
  created_at: Type.String(),
  updated_at: Type.String(),
});
export type SecGroup = Static<typeof SecGroup>;
const PacketCount = Type.Object({ packets: Type.Integer(), bytes: Type.Integer() });
/** One of this host's ports in the group, with its bridge counters since the port was guarded. */
export const SecGroupPortCounters = Type.Object({
  instance: Type.String(),
  port: Type.String(),
  /** What each of the group's rules accepted at this port. */
  rules: Type.Array(Type.Object({ id: Type.String(), packets: Type.Integer(), bytes: Type.Integer() })),
  /** Everything the port refused, whichever of its groups it belongs to (they compose). */
  dropped: PacketCount,
  /** Invalid packets (conntrack) dropped at the port. */
  invalid: PacketCount,
});
export type SecGroupPortCounters = Static<typeof SecGroupPortCounters>;
/** GET /v1/secgroups/:name: the group and, on the answering host, its members' ports. */
export const SecGroupDetail = Type.Object({
  ...SecGroup.properties,
  ports: Type.Array(SecGroupPortCounters),
});
export type SecGroupDetail = Static<typeof SecGroupDetail>;
export const SecGroupList = Type.Object({ secgroups: Type.Array(SecGroup) });
export type SecGroupList = Static<typeof SecGroupList>;
/**
 * A string or null, as one JSON Schema `type` list: the admin API's ajv
 * coerces types, and would turn null into "" against `anyOf [string, null]`
 * (or "" into null the other way round); a type list matches either as is.
 */
const nullable = (opts: { maxLength?: number; pattern?: string; description?: string }) =>
  Type.Unsafe<string | null>({ ...opts, type: ['string', 'null'] });

/**
 * PATCH /v1/instances/:name: fields given replace the instance's, absent ones
 * stay. `secgroups: []` leaves every group, `ssh_keys: []` drops every key;
 * null removes user-data, vendor-data or the role; `meta` is a merge patch
 * (RFC 7396): a string sets that key, null removes it, other keys stay.
 */
export const InstanceUpdate = Type.Object(
  {
    secgroups: Type.Optional(Type.Array(Type.String({ maxLength: 31 }), { maxItems: 16 })),
    user_data: Type.Optional(nullable({ maxLength: 90_000, description: 'base64' })),
    vendor_data: Type.Optional(nullable({ maxLength: 90_000, description: 'base64' })),
    ssh_keys: InstanceCreate.properties.ssh_keys,
    role: Type.Optional(nullable({ pattern: ROLE_PATTERN })),
    tokens: Type.Optional(TokensMode),
    meta: Type.Optional(
      Type.Record(Type.String(), nullable({ maxLength: 4096 }), {
        maxProperties: 64,
      }),
    ),
  },
  { additionalProperties: false },
);
export type InstanceUpdate = Static<typeof InstanceUpdate>;

// Image schemas live with the image store, below the API layer.
export { Image, ImageImport, ImageKind } from '../../images/image-types.js';

import { Image } from '../../images/image-types.js';

export const ImageList = Type.Object({ images: Type.Array(Image) });
export type ImageList = Static<typeof ImageList>;

export const StopRequest = Type.Object(
  { timeout_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })) },
  { additionalProperties: false },
);
export type StopRequest = Static<typeof StopRequest>;

// Cluster: hosts, the instance directory, etcd and the watch, identity checks.
export const HostState = Type.Union([Type.Literal('alive'), Type.Literal('lost'), Type.Literal('forgotten')]);
export const HostInfo = Type.Object({
  id: Type.String(),
  address: Type.String(),
  fingerprint: Type.String({ description: "sha256 of the host's Ed25519 public key (SPKI DER), hex" }),
  state: HostState,
  instances: Type.Integer({ description: 'entries in the instance directory on this host' }),
  registered_at: Type.Optional(Type.String()),
  version: Type.String(),
  forgotten_at: Type.Optional(Type.String()),
  forgotten_by: Type.Optional(Type.String()),
});
export type HostInfo = Static<typeof HostInfo>;
export const HostList = Type.Object({
  mode: Type.Union([Type.Literal('cluster'), Type.Literal('single-host')]),
  self: Type.String({ description: "the answering host's id" }),
  hosts: Type.Array(HostInfo),
});
export type HostList = Static<typeof HostList>;
export const HostListQuery = Type.Object(
  { all: Type.Optional(Type.Boolean({ description: 'include forgotten hosts' })) },
  { additionalProperties: false },
);

export const ForgetAnswer = Type.Object({
  host: Type.String(),
  already: Type.Boolean({ description: 'the host was forgotten before and nothing of it was left' }),
  instances: Type.Array(Type.Object({ id: Type.String(), name: Type.String() })),
  quarantined: Type.Array(Type.String(), { description: 'MAC and IP keys moved into quarantine' }),
  left_alone: Type.Array(Type.String(), {
    description: 'MAC and IP keys no longer assigned to the instance; not touched',
  }),
  forgotten_at: Type.String(),
  forgotten_by: Type.String(),
});
export type ForgetAnswer = Static<typeof ForgetAnswer>;

export const ClusterStatusAnswer = Type.Object({
  mode: Type.Union([Type.Literal('cluster'), Type.Literal('single-host')]),
  host_id: Type.String(),
  etcd: Type.Optional(
    Type.Object({
      endpoints: Type.Array(Type.String()),
      members: Type.Optional(
        Type.Array(
          Type.Object({
            id: Type.String(),
            name: Type.String(),
            client_urls: Type.Array(Type.String()),
            leader: Type.Boolean(),
          }),
        ),
      ),
      leader: Type.Optional(Type.String()),
      revision: Type.Optional(Type.Integer()),
      version: Type.Optional(Type.String()),
      db_size_bytes: Type.Optional(Type.Integer()),
      error: Type.Optional(
        Type.String({ description: 'why etcd did not answer; the watch part still does' }),
      ),
    }),
  ),
  watch: Type.Optional(
    Type.Object({
      state: Type.String(),
      applied_revision: Type.Integer(),
      lag_revisions: Type.Optional(Type.Integer()),
      ms_since_last_event: Type.Optional(Type.Integer()),
    }),
  ),
});
export type ClusterStatusAnswer = Static<typeof ClusterStatusAnswer>;

export const DirectoryEntry = Type.Object({
  id: Type.String(),
  name: Type.String(),
  host: Type.String(),
  runtime: Runtime,
  nics: Type.Array(Type.Object({ network: Type.String(), mac: Type.String(), ip: Type.String() })),
  role: Type.Optional(Type.String()),
  image_sha256: Type.Optional(Type.String()),
  secgroups: Type.Optional(Type.Array(Type.String())),
  created_at: Type.String(),
});
export type DirectoryEntry = Static<typeof DirectoryEntry>;
export const DirectoryList = Type.Object({ instances: Type.Array(DirectoryEntry) });
export type DirectoryList = Static<typeof DirectoryList>;

export const IdentityVerify = Type.Object(
  {
    document: Type.String({ maxLength: 64 * 1024 }),
    signature: Type.String({ maxLength: 1024 }),
  },
  { additionalProperties: false },
);
export type IdentityVerify = Static<typeof IdentityVerify>;
export const VerifyAnswer = Type.Object({
  valid: Type.Boolean(),
  host: Type.Optional(Type.String()),
  host_state: Type.Optional(HostState),
  fingerprint: Type.Optional(Type.String()),
  instance_id: Type.Optional(Type.String()),
  reason: Type.String(),
});
export type VerifyAnswer = Static<typeof VerifyAnswer>;
