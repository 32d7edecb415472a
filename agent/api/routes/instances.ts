import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { UpdateSummary } from '../../services/instance-meta-update.js';
import type { InstanceService } from '../../services/instances.js';
import type { Callers } from '../caller.js';
import {
  ExecRequest,
  ExecResult,
  Instance,
  InstanceCreate,
  InstanceList,
  InstanceUpdate,
  StopRequest,
} from '../types.js';

export const instanceRoutes: FastifyPluginAsyncTypebox<{
  instances: InstanceService;
  callers: Callers;
}> = async (app, { instances, callers }) => {
  const params = Type.Object({ name: Type.String({ maxLength: 64 }) });
  app.get('/instances', { schema: { response: { 200: InstanceList } } }, async () => ({
    instances: instances.all(),
  }));
  app.post(
    '/instances',
    {
      schema: { body: InstanceCreate, response: { 201: Instance } },
      config: {
        audit: {
          event: 'admin.instance.create',
          // What the guest is and where; its user-data and keys stay out of the log.
          describe: (req, answer) => {
            const rec = answer as Instance | undefined;
            const body = req.body as InstanceCreate;
            return {
              instance: rec?.id ?? body.name,
              network: body.network,
              detail: {
                name: body.name,
                runtime: rec?.runtime ?? body.runtime ?? 'netns',
                ...(body.image ? { image: body.image } : {}),
                ...(rec?.nics[0] ? { mac: rec.nics[0].mac, ip: rec.nics[0].ip } : {}),
                ...(body.secgroups ? { secgroups: body.secgroups } : {}),
              },
            };
          },
        },
      },
    },
    // The caller is asked only when a group is joined: joining may need a gid (secgroup-join.ts).
    async (req, reply) =>
      reply
        .status(201)
        .send(
          await instances.create(req.body, req.body.secgroups?.length ? await callers.of(req) : undefined),
        ),
  );
  // What each update changed, for its audit record: from the service, which
  // knows the values before, never from the body (user-data, keys, tag values).
  const summaries = new WeakMap<FastifyRequest, UpdateSummary>();
  app.patch(
    '/instances/:name',
    {
      schema: { params, body: InstanceUpdate, response: { 200: Instance } },
      config: {
        audit: {
          event: 'admin.instance.update',
          describe: (req, answer) => ({
            instance: (answer as Instance | undefined)?.id ?? (req.params as { name: string }).name,
            detail: { ...(summaries.get(req) ?? { changed: [] }) },
          }),
        },
      },
    },
    async (req) => {
      const { instance, summary } = await instances.updateDescribed(
        req.params.name,
        req.body,
        await callers.of(req),
      );
      summaries.set(req, summary);
      return instance;
    },
  );
  app.get('/instances/:name', { schema: { params, response: { 200: Instance } } }, async (req) =>
    instances.get(req.params.name),
  );
  const named = (event: string) => ({
    audit: {
      event,
      describe: (req: FastifyRequest) => ({ instance: (req.params as { name: string }).name }),
    },
  });
  app.delete(
    '/instances/:name',
    { schema: { params }, config: named('admin.instance.delete') },
    async (req, reply) => {
      await instances.delete(req.params.name);
      return reply.status(204).send();
    },
  );
  app.post(
    '/instances/:name/exec',
    {
      schema: { params, body: ExecRequest, response: { 200: ExecResult } },
      config: {
        audit: {
          event: 'admin.instance.exec',
          describe: (req, answer) => ({
            instance: (req.params as { name: string }).name,
            detail: {
              argv: (req.body as ExecRequest).argv,
              ...(typeof (answer as ExecResult | undefined)?.code === 'number'
                ? { code: (answer as ExecResult).code }
                : {}),
            },
          }),
        },
      },
    },
    async (req) => instances.exec(req.params.name, req.body.argv),
  );
  for (const verb of ['start', 'stop', 'reboot'] as const)
    app.post(
      `/instances/:name/${verb}`,
      {
        schema: { params, body: Type.Optional(StopRequest), response: { 200: Instance } },
        config: named(`admin.instance.${verb}`),
      },
      async (req) => instances.power(req.params.name, verb, (req.body?.timeout_seconds ?? 20) * 1000),
    );
};
