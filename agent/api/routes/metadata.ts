import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

/** The key that signs instance identity documents, for whoever verifies them. */
export const metadataRoutes: FastifyPluginAsyncTypebox<{ publicKeyPem: string }> = async (
  app,
  { publicKeyPem },
) => {
  const HostKey = Type.Object({ algorithm: Type.Literal('ed25519'), public_key_pem: Type.String() });
  app.get('/metadata/host-key', { schema: { response: { 200: HostKey } } }, async () => ({
    algorithm: 'ed25519' as const,
    public_key_pem: publicKeyPem,
  }));
};
