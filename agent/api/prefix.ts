// The admin API's path prefix, alone in its module: the client (and so every
// berthctl run) needs it, and agent/api/types.ts builds TypeBox schemas at
// import, which costs berthctl about 150 ms.
export const API_PREFIX = '/v1';
