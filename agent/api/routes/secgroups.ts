// /v1/secgroups: groups and their rules. Every change is audited by
// admin-audit.ts (allowed with the peer, refused with the peer and the code).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { SecGroupService } from '../../services/secgroups.js';
import {
  SecGroup,
  SecGroupCreate,
  SecGroupDetail,
  SecGroupList,
  type SecGroupPortCounters,
  SecGroupRule,
  SecGroupRuleAdd,
} from '../types.js';

export interface SecGroupRouteOptions {
  secgroups: SecGroupService;
  /** This host's ports in a group, with their counters (the enforcer's). */
  usage: (group: string) => Promise<SecGroupPortCounters[]>;
}

export const secgroupRoutes: FastifyPluginAsyncTypebox<SecGroupRouteOptions> = async (
  app,
  { secgroups, usage },
) => {
  const params = Type.Object({ name: Type.String({ maxLength: 31 }) });
  const ruleParams = Type.Object({
    name: Type.String({ maxLength: 31 }),
    rule: Type.String({ maxLength: 16 }),
  });
  const group = (req: FastifyRequest) => (req.params as { name?: string }).name;

  app.get('/secgroups', { schema: { response: { 200: SecGroupList } } }, async () => ({
    secgroups: secgroups.all(),
  }));
  app.get('/secgroups/:name', { schema: { params, response: { 200: SecGroupDetail } } }, async (req) => {
    const g = secgroups.get(req.params.name);
    return { ...g, ports: await usage(g.name) };
  });
  app.post(
    '/secgroups',
    {
      schema: { body: SecGroupCreate, response: { 200: SecGroup, 201: SecGroup } },
      config: {
        audit: {
          event: 'admin.secgroup.create',
          // join_gids decide who may put guests in it: the point of this record.
          describe: (req) => {
            const b = req.body as SecGroupCreate;
            return { detail: { secgroup: b.name, join_gids: b.join_gids ?? [] } };
          },
        },
      },
    },
    async (req, reply) => {
      const existed = secgroups.has(req.body.name);
      const g = await secgroups.create(req.body);
      return reply.status(existed ? 200 : 201).send(g);
    },
  );
  app.delete(
    '/secgroups/:name',
    {
      schema: { params },
      config: {
        audit: { event: 'admin.secgroup.delete', describe: (req) => ({ detail: { secgroup: group(req) } }) },
      },
    },
    async (req, reply) => {
      await secgroups.delete(req.params.name);
      return reply.status(204).send();
    },
  );
  app.post(
    '/secgroups/:name/rules',
    {
      schema: { params, body: SecGroupRuleAdd, response: { 200: SecGroupRule } },
      config: {
        audit: {
          event: 'admin.secgroup.rule.add',
          // The rule as stored (canonical, with its id) when it landed; as asked when refused.
          describe: (req, answer) => ({
            detail: { secgroup: group(req), rule: (answer as SecGroupRule | undefined) ?? req.body },
          }),
        },
      },
    },
    async (req) => secgroups.addRule(req.params.name, req.body),
  );
  app.delete(
    '/secgroups/:name/rules/:rule',
    {
      schema: { params: ruleParams, response: { 200: SecGroupRule } },
      config: {
        audit: {
          event: 'admin.secgroup.rule.delete',
          describe: (req, answer) => ({
            detail: {
              secgroup: group(req),
              rule: (answer as SecGroupRule | undefined) ?? (req.params as { rule: string }).rule,
            },
          }),
        },
      },
    },
    async (req) => secgroups.deleteRule(req.params.name, req.params.rule),
  );
};
