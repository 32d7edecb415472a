import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AuditLog } from '../../audit/audit-log.js';
import { AuditList, AuditQuery } from '../types.js';

export const auditRoutes: FastifyPluginAsyncTypebox<{ audit: AuditLog }> = async (app, { audit }) => {
  app.get('/audit', { schema: { querystring: AuditQuery, response: { 200: AuditList } } }, async (req) => ({
    records: await audit.query(req.query),
  }));
};
