import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

const Jwk = Type.Object({
  kty: Type.Literal('OKP'),
  crv: Type.Literal('Ed25519'),
  x: Type.String(),
  kid: Type.String({ description: 'the host id; a token names its signer by it' }),
  use: Type.Literal('sig'),
  alg: Type.Literal('EdDSA'),
});

/**
 * The key that signs instance identity documents, for whoever verifies them;
 * and the key set (JWKS) guests read at /latest/dynamic/berth/jwks.json, the
 * same bytes, so a verifier off the guest network can take it from here.
 */
export const metadataRoutes: FastifyPluginAsyncTypebox<{
  publicKeyPem: string;
  keySet?: () => string;
}> = async (app, { publicKeyPem, keySet }) => {
  if (keySet)
    app.get(
      '/metadata/jwks',
      { schema: { response: { 200: Type.Object({ keys: Type.Array(Jwk) }) } } },
      async () => JSON.parse(keySet()),
    );
  const HostKey = Type.Object({ algorithm: Type.Literal('ed25519'), public_key_pem: Type.String() });
  app.get('/metadata/host-key', { schema: { response: { 200: HostKey } } }, async () => ({
    algorithm: 'ed25519' as const,
    public_key_pem: publicKeyPem,
  }));
};
