// The messages between berthd and a network's endpoint process, over the
// Node IPC channel (serialization "advanced", so Buffers pass as they are).
// The endpoint is deliberately thin: sockets inside the network's namespace;
// decisions (identity, leases, policy) stay in berthd.

export interface EndpointConfig {
  network: string;
  /** The endpoint's in-subnet address; DHCP server id and metadata fallback. */
  serviceIp: string;
  metadataIp: string;
  metadataPort: number;
  dhcpPort: number;
  logLevel: string;
}

/** A request from the endpoint to berthd. */
export interface RpcRequest {
  t: 'call';
  id: number;
  method: string;
  params: unknown;
}

export interface RpcResponse {
  t: 'result';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: { code: string; message: string };
}

/** berthd -> endpoint, no answer expected. */
export type Notice =
  | { t: 'config'; config: EndpointConfig }
  | { t: 'invalidate'; ips?: string[]; all?: boolean }
  | { t: 'dhcp-send'; data: Buffer; address: string; port: number };

/** endpoint -> berthd, no answer expected. */
export type Report =
  /** The ports actually bound (0 when that listener could not start). */
  | { t: 'ready'; dhcpPort: number; metadataPort: number }
  | { t: 'dhcp-packet'; data: Buffer; address: string; port: number }
  | { t: 'log'; level: 'info' | 'warn' | 'error'; msg: string; fields?: Record<string, unknown> };

export type ParentMessage = Notice | RpcResponse;
export type ChildMessage = Report | RpcRequest;

export const METADATA_IP = '169.254.169.254';
