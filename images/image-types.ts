// The image records and the import request, as schemas: the admin API
// re-exports them, so the wire format and the store share one definition.
import { type Static, Type } from 'typebox';

export const ImageKind = Type.Union([Type.Literal('disk'), Type.Literal('kernel')]);

export const ImageImport = Type.Object(
  {
    /** A file on berthd's host; the CLI runs there. */
    path: Type.String({ minLength: 1, maxLength: 4096 }),
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' }),
    kind: Type.Optional(ImageKind),
    /** A kernel that boots a disk image (with initrd and cmdline): for disks without a bootloader. */
    kernel: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    initrd: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    cmdline: Type.Optional(Type.String({ maxLength: 4096 })),
  },
  { additionalProperties: false },
);
export type ImageImport = Static<typeof ImageImport>;

export const Image = Type.Object({
  name: Type.String(),
  sha256: Type.String(),
  kind: ImageKind,
  format: Type.Optional(Type.Union([Type.Literal('qcow2'), Type.Literal('raw')])),
  bytes: Type.Integer(),
  parts: Type.Array(
    Type.Object({
      role: Type.Union([Type.Literal('disk'), Type.Literal('kernel'), Type.Literal('initrd')]),
      file: Type.String(),
      sha256: Type.String(),
      bytes: Type.Integer(),
    }),
  ),
  cmdline: Type.Optional(Type.String()),
  created_at: Type.String(),
  source: Type.String(),
  used_by: Type.Optional(Type.Array(Type.String())),
});
export type Image = Static<typeof Image>;
