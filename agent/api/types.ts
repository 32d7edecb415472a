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
