import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Status } from '../types.js';

export interface StatusSource {
  status(): Promise<Status>;
}

export const statusRoutes: FastifyPluginAsyncTypebox<{ source: StatusSource }> = async (app, { source }) => {
  app.get('/status', { schema: { response: { 200: Status } } }, () => source.status());
};
