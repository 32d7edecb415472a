import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { invalidField } from '../../../base/errors.js';
import type { PolicyService } from '../../services/policies.js';
import { Policy, PolicyList } from '../types.js';

export const policyRoutes: FastifyPluginAsyncTypebox<{ policies: PolicyService }> = async (
  app,
  { policies },
) => {
  const params = Type.Object({ name: Type.String({ maxLength: 63 }) });
  app.get('/policies', { schema: { response: { 200: PolicyList } } }, async () => ({
    policies: policies.all(),
  }));
  app.get('/policies/:name', { schema: { params, response: { 200: Policy } } }, async (req) =>
    policies.get(req.params.name),
  );
  const set = {
    audit: {
      event: 'admin.policy.set',
      // The whole policy: who may now read or write what is the point of this record.
      describe: (req: FastifyRequest) => {
        const { name, identities, allow, deny } = req.body as Policy;
        return { detail: { policy: name, identities, allow, deny } };
      },
    },
  };
  const deleted = {
    audit: {
      event: 'admin.policy.delete',
      describe: (req: FastifyRequest) => ({ detail: { policy: (req.params as { name: string }).name } }),
    },
  };
  app.put(
    '/policies/:name',
    { schema: { params, body: Policy, response: { 200: Policy } }, config: set },
    async (req) => {
      if (req.body.name !== req.params.name)
        throw invalidField('name', `"${req.body.name}" does not match the path's "${req.params.name}"`);
      return policies.put(req.body);
    },
  );
  app.delete('/policies/:name', { schema: { params }, config: deleted }, async (req, reply) => {
    await policies.delete(req.params.name);
    return reply.status(204).send();
  });
};
