// Images: import a file that is on berthd's host (the CLI runs there), list,
// show, delete. An import asked for as NDJSON streams its progress, then the
// image (or the error) as the last line.
import { PassThrough } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { ImageStore } from '../../../images/store.js';
import type { AdminAudit } from '../admin-audit.js';
import { errorBody, toBerthError } from '../error-mapping.js';
import { Image, ImageImport, ImageList } from '../types.js';

export const NDJSON = 'application/x-ndjson';

export const imageRoutes: FastifyPluginAsyncTypebox<{ images: ImageStore; changes: AdminAudit }> = async (
  app,
  { images, changes },
) => {
  const params = Type.Object({ name: Type.String({ maxLength: 64 }) });
  const imported = {
    audit: {
      event: 'admin.image.import',
      describe: (req: FastifyRequest, answer: unknown) => {
        const body = req.body as ImageImport;
        const image = answer as Image | undefined;
        return {
          detail: {
            name: body.name,
            path: body.path,
            ...(image?.sha256 ? { sha256: image.sha256, kind: image.kind } : {}),
          },
        };
      },
    },
  };
  const deleted = {
    audit: {
      event: 'admin.image.delete',
      describe: (req: FastifyRequest) => ({ detail: { name: (req.params as { name: string }).name } }),
    },
  };
  app.get('/images', { schema: { response: { 200: ImageList } } }, async () => ({
    images: await images.list(),
  }));
  app.get('/images/:name', { schema: { params, response: { 200: Image } } }, async (req) =>
    images.get(req.params.name),
  );
  app.delete('/images/:name', { schema: { params }, config: deleted }, async (req, reply) => {
    await images.delete(req.params.name);
    return reply.status(204).send();
  });
  app.post(
    '/images',
    { schema: { body: ImageImport, response: { 201: Image, 200: Type.Unknown() } }, config: imported },
    async (req, reply) => {
      // Refusals that need no copying are answered (and audited) as plain errors.
      await images.precheck(req.body);
      if (!String(req.headers.accept ?? '').includes(NDJSON))
        return reply.status(201).send(await images.import(req.body));
      const out = new PassThrough();
      // The 200 goes out before the copy is done: the audit record waits for the outcome.
      changes.defer(req);
      let last = 0;
      images
        .import(req.body, (p) => {
          if (Date.now() - last < 200 && p.done < p.total) return;
          last = Date.now();
          out.write(`${JSON.stringify({ progress: p })}\n`);
        })
        .then(async (image) => {
          await changes.changed(req, image);
          out.end(`${JSON.stringify({ image })}\n`);
        })
        .catch(async (err) => {
          const berr = toBerthError(err);
          req.log.warn({ code: berr.code }, berr.message);
          await changes.failed(req, berr);
          out.end(`${JSON.stringify(errorBody(berr))}\n`);
        });
      return reply.status(200).header('content-type', NDJSON).send(out);
    },
  );
};
