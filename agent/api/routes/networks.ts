import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { invalidField } from '../../../base/errors.js';
import type { NetworkDriver } from '../../../hostnet/driver.js';
import type { Observer } from '../../daemon/services.js';
import type { NetworkService } from '../../services/networks.js';
import { Network, NetworkCreate, NetworkList, NetworkName, ResolveAnswer, ResolveQuery } from '../types.js';

export const networkRoutes: FastifyPluginAsyncTypebox<{
  networks: NetworkService;
  driver: NetworkDriver;
  observer: Observer;
}> = async (app, { networks, driver, observer }) => {
  const params = Type.Object({ name: NetworkName });
  app.get('/networks', { schema: { response: { 200: NetworkList } } }, async () => {
    const drops = await driver.guardDrops();
    return { networks: await Promise.all(networks.all().map((n) => networks.view(n, drops))) };
  });
  app.post(
    '/networks',
    {
      schema: { body: NetworkCreate, response: { 201: Network } },
      config: {
        audit: {
          event: 'admin.network.create',
          describe: (req) => {
            const { name, subnet, vlan, uplink } = req.body as NetworkCreate;
            return {
              network: name,
              detail: {
                subnet,
                ...(vlan !== undefined ? { vlan } : {}),
                ...(uplink !== undefined ? { uplink } : {}),
              },
            };
          },
        },
      },
    },
    async (req, reply) => {
      const rec = await networks.create(req.body);
      return reply.status(201).send(await networks.view(rec, []));
    },
  );
  app.get('/networks/:name', { schema: { params, response: { 200: Network } } }, async (req) =>
    networks.view(networks.get(req.params.name), await driver.guardDrops()),
  );
  const deleted = {
    audit: {
      event: 'admin.network.delete',
      describe: (req: FastifyRequest) => ({ network: (req.params as { name: string }).name }),
    },
  };
  app.delete('/networks/:name', { schema: { params }, config: deleted }, async (req, reply) => {
    await networks.delete(req.params.name);
    return reply.status(204).send();
  });
  // Who the host sees behind an IP (as the metadata service will) or a MAC (as DHCP will).
  app.get(
    '/networks/:name/resolve',
    { schema: { params, querystring: ResolveQuery, response: { 200: ResolveAnswer } } },
    async (req) => {
      networks.get(req.params.name);
      const { ip, mac } = req.query;
      if ((ip === undefined) === (mac === undefined))
        throw invalidField('querystring', 'give exactly one of ip or mac');
      return ip !== undefined
        ? observer.resolve(req.params.name, ip)
        : observer.resolveMac(req.params.name, mac as string);
    },
  );
};
