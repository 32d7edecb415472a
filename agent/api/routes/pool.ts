import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { MacPool } from '../../../hostnet/alloc/mac-pool.js';
import { PoolUsage } from '../types.js';

export const poolRoutes: FastifyPluginAsyncTypebox<{ macs: MacPool }> = async (app, { macs }) => {
  app.get('/pool', { schema: { response: { 200: PoolUsage } } }, async () => ({ pools: macs.usage() }));
};
