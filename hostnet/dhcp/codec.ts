// The DHCPv4 codec: decode() for anything a guest sends, encode() for the
// server's replies, encodePacket() for client-side messages in tests and labs.
export { type DecodeOptions, decode, RejectionCounter } from './codec-decode.js';
export {
  type DhcpReplySpec,
  type EncodedReply,
  type EncodeOptions,
  encode,
  encodeReply,
  type ReplyParams,
  type ReplyType,
} from './codec-encode.js';
export * from './codec-types.js';
export { encodePacket, type HeaderFields, optionBytes } from './codec-write.js';
export {
  type ClientId,
  DhcpOptions,
  MessageType,
  type MessageTypeName,
  messageTypeName,
  OPT,
} from './options.js';
export { type ClasslessRoute, decodeClasslessRoutes, encodeClasslessRoutes } from './options-routes.js';
