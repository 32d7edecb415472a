// Wire types of the admin API, shared by berthd's routes, the client and berthctl.
import { type Static, Type } from 'typebox';

export const API_PREFIX = '/v1';

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

export const InstanceCreate = Type.Object(
  {
    name: InstanceName,
    network: NetworkName,
    runtime: Type.Optional(Runtime),
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
  ]),
  created_at: Type.String(),
  netns: Type.Optional(Type.String()),
  nics: Type.Array(Nic),
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
      Type.Literal('no-neighbour'),
      Type.Literal('mac-not-on-port'),
      Type.Literal('mac-wrong-port'),
      Type.Literal('port-not-owned'),
    ]),
  ),
});
export type ResolveAnswer = Static<typeof ResolveAnswer>;
