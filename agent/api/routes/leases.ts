import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { DhcpService } from '../../services/dhcp.js';
import { LeaseList, LeaseQuery } from '../types.js';

export const leaseRoutes: FastifyPluginAsyncTypebox<{ dhcp: Pick<DhcpService, 'list'> }> = async (
  app,
  { dhcp },
) => {
  app.get('/leases', { schema: { querystring: LeaseQuery, response: { 200: LeaseList } } }, async (req) => ({
    leases: await dhcp.list(req.query.network),
  }));
};
