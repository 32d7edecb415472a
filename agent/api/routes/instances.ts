import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { InstanceService } from '../../services/instances.js';
import { ExecRequest, ExecResult, Instance, InstanceCreate, InstanceList, StopRequest } from '../types.js';

export const instanceRoutes: FastifyPluginAsyncTypebox<{ instances: InstanceService }> = async (
  app,
  { instances },
) => {
  const params = Type.Object({ name: Type.String({ maxLength: 64 }) });
  app.get('/instances', { schema: { response: { 200: InstanceList } } }, async () => ({
    instances: instances.all(),
  }));
  app.post(
    '/instances',
    { schema: { body: InstanceCreate, response: { 201: Instance } } },
    async (req, reply) => reply.status(201).send(await instances.create(req.body)),
  );
  app.get('/instances/:name', { schema: { params, response: { 200: Instance } } }, async (req) =>
    instances.get(req.params.name),
  );
  app.delete('/instances/:name', { schema: { params } }, async (req, reply) => {
    await instances.delete(req.params.name);
    return reply.status(204).send();
  });
  app.post(
    '/instances/:name/exec',
    { schema: { params, body: ExecRequest, response: { 200: ExecResult } } },
    async (req) => instances.exec(req.params.name, req.body.argv),
  );
  for (const verb of ['start', 'stop', 'reboot'] as const)
    app.post(
      `/instances/:name/${verb}`,
      { schema: { params, body: Type.Optional(StopRequest), response: { 200: Instance } } },
      async (req) => instances.power(req.params.name, verb, (req.body?.timeout_seconds ?? 20) * 1000),
    );
};
