// Maintenance notices: one instance's (/instances/:name/notices) and the
// host's drain (/host/notices), which applies to every instance on this host
// until cleared. Every change is audited; what a guest acknowledged shows in the lists.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { InstanceService } from '../../services/instances.js';
import type { Notice as NoticeRecord, NoticeService } from '../../services/notices.js';
import { Notice, NoticeCreate, NoticeList } from '../notice-types.js';

/** Only this instance's acknowledgement: a drain's record holds every guest's. */
const ownAcks = (n: NoticeRecord, instance: string): NoticeRecord => ({
  ...n,
  acks: n.acks[instance] ? { [instance]: n.acks[instance] } : {},
});

const described = (n: Notice | undefined, body: NoticeCreate) => ({
  ...(n
    ? { event_id: n.id, not_before: n.not_before, not_after: n.not_after, code: n.code }
    : { at: body.at }),
  ...(body.description ? { description: body.description } : {}),
});

export const noticeRoutes: FastifyPluginAsyncTypebox<{
  notices: NoticeService;
  instances: InstanceService;
}> = async (app, { notices, instances }) => {
  const params = Type.Object({ name: Type.String({ maxLength: 64 }) });
  const withId = Type.Object({ name: Type.String({ maxLength: 64 }), id: Type.String({ maxLength: 64 }) });
  const idOnly = Type.Object({ id: Type.String({ maxLength: 64 }) });

  app.get('/instances/:name/notices', { schema: { params, response: { 200: NoticeList } } }, async (req) => {
    const rec = instances.get(req.params.name);
    return { notices: notices.forInstance(rec.id).map((n) => ownAcks(n, rec.id)) };
  });
  app.post(
    '/instances/:name/notices',
    {
      schema: { params, body: NoticeCreate, response: { 201: Notice } },
      config: {
        audit: {
          event: 'admin.instance.notice',
          describe: (req, answer) => ({
            instance: (answer as Notice | undefined)?.instance ?? (req.params as { name: string }).name,
            detail: described(answer as Notice | undefined, req.body as NoticeCreate),
          }),
        },
      },
    },
    async (req, reply) => {
      const rec = instances.get(req.params.name);
      return reply.status(201).send(await notices.schedule(rec.id, req.body, rec.name));
    },
  );
  app.delete(
    '/instances/:name/notices/:id',
    {
      schema: { params: withId },
      config: {
        audit: {
          event: 'admin.instance.notice.cancel',
          describe: (req) => {
            const p = req.params as { name: string; id: string };
            return { instance: p.name, detail: { event_id: p.id } };
          },
        },
      },
    },
    async (req, reply) => {
      const rec = instances.get(req.params.name);
      await notices.cancel(rec.id, req.params.id);
      return reply.status(204).send();
    },
  );

  app.get('/host/notices', { schema: { response: { 200: NoticeList } } }, async () => ({
    notices: notices.hostNotices(),
  }));
  app.post(
    '/host/notices',
    {
      schema: { body: NoticeCreate, response: { 201: Notice } },
      config: {
        audit: {
          event: 'admin.host.drain',
          describe: (req, answer) => ({
            detail: described(answer as Notice | undefined, req.body as NoticeCreate),
          }),
        },
      },
    },
    async (req, reply) => reply.status(201).send(await notices.schedule(undefined, req.body, 'host')),
  );
  app.delete(
    '/host/notices/:id',
    {
      schema: { params: idOnly },
      config: {
        audit: {
          event: 'admin.host.drain.clear',
          describe: (req) => ({ detail: { event_id: (req.params as { id: string }).id } }),
        },
      },
    },
    async (req, reply) => {
      await notices.cancel(undefined, req.params.id);
      return reply.status(204).send();
    },
  );
};
