// Cluster routes: hosts (list, forget), etcd and watch status, the instance
// directory of every host, and identity documents checked against every
// host's key. They answer in single-host mode too, for this host alone.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { ClusterService } from '../../services/cluster.js';
import type { AdminAudit } from '../admin-audit.js';
import {
  ClusterStatusAnswer,
  DirectoryList,
  ForgetAnswer,
  HostList,
  HostListQuery,
  IdentityVerify,
  VerifyAnswer,
} from '../types.js';

export const clusterRoutes: FastifyPluginAsyncTypebox<{
  cluster: ClusterService;
  changes: AdminAudit;
  hostId: string;
}> = async (app, { cluster, changes, hostId }) => {
  const mode = () => (cluster.clustered ? ('cluster' as const) : ('single-host' as const));
  app.get('/hosts', { schema: { querystring: HostListQuery, response: { 200: HostList } } }, async (req) => ({
    mode: mode(),
    self: hostId,
    hosts: cluster.hosts(req.query.all === true),
  }));

  const params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });
  const forgotten = {
    audit: {
      event: 'admin.host.forget',
      describe: (req: FastifyRequest, answer: unknown) => {
        const a = answer as ForgetAnswer | undefined;
        return {
          detail: {
            host: (req.params as { id: string }).id,
            ...(a
              ? { instances: a.instances.map((i) => i.id), quarantined: a.quarantined, already: a.already }
              : {}),
          },
        };
      },
    },
  };
  app.post(
    '/hosts/:id/forget',
    { schema: { params, response: { 200: ForgetAnswer } }, config: forgotten },
    async (req) => {
      const peer = await changes.peer(req);
      const by = 'error' in peer ? hostId : `uid ${peer.uid} (pid ${peer.pid}) on ${hostId}`;
      return cluster.forget(req.params.id, by);
    },
  );

  app.get('/cluster/status', { schema: { response: { 200: ClusterStatusAnswer } } }, async () =>
    cluster.status(),
  );
  app.get('/directory', { schema: { response: { 200: DirectoryList } } }, async () => ({
    instances: cluster.directory(),
  }));

  // A read, but POST for the document's size; audited like a change, and a
  // document that does not verify is recorded as the refusal it is.
  const verified = {
    audit: {
      event: 'admin.identity.verify',
      describe: (_req: FastifyRequest, answer: unknown) => {
        const a = answer as VerifyAnswer | undefined;
        return {
          ...(a?.instance_id ? { instance: a.instance_id } : {}),
          detail: { valid: a?.valid, host: a?.host, host_state: a?.host_state, fingerprint: a?.fingerprint },
        };
      },
    },
  };
  app.post(
    '/identity/verify',
    { schema: { body: IdentityVerify, response: { 200: VerifyAnswer } }, config: verified },
    async (req) => {
      const answer = cluster.verify(req.body.document, req.body.signature);
      changes.defer(req);
      if (answer.valid) await changes.changed(req, answer);
      else await changes.refusedAnswer(req, `identity document not verified: ${answer.reason}`, answer);
      return answer;
    },
  );
};
