// The admin API's shapes for maintenance notices (services/notices.ts).
import { type Static, Type } from 'typebox';

export const NoticeCreate = Type.Object(
  {
    at: Type.String({
      maxLength: 64,
      description: 'when it starts (NotBefore): ISO 8601 with a zone, in the future',
    }),
    until: Type.Optional(
      Type.String({ maxLength: 64, description: 'when it ends (NotAfter); default two hours after at' }),
    ),
    code: Type.Optional(
      Type.String({
        maxLength: 32,
        description:
          "EC2's event code: instance-reboot, system-reboot, system-maintenance (an instance's default), instance-retirement, instance-stop (a drain's default)",
      }),
    ),
    description: Type.Optional(Type.String({ maxLength: 255 })),
  },
  { additionalProperties: false },
);
export type NoticeCreate = Static<typeof NoticeCreate>;

export const NoticeAck = Type.Object({
  at: Type.String(),
  ip: Type.String(),
  mac: Type.String(),
  port: Type.String(),
  identity: Type.String(),
});

export const Notice = Type.Object({
  id: Type.String({ description: 'instance-event-<17 hex>, as EC2 names events' }),
  scope: Type.Union([Type.Literal('instance'), Type.Literal('host')]),
  instance: Type.Optional(Type.String()),
  code: Type.String(),
  description: Type.String(),
  not_before: Type.String(),
  not_after: Type.String(),
  created_at: Type.String(),
  acks: Type.Record(Type.String(), NoticeAck, { description: 'acknowledgements by instance id' }),
});
export type Notice = Static<typeof Notice>;

export const NoticeList = Type.Object({ notices: Type.Array(Notice) });
export type NoticeList = Static<typeof NoticeList>;
