// The messages between berthd and a network's endpoint process, over the
// endpoint's control socket (see channel.ts). The endpoint is deliberately
// thin: sockets inside the network's namespace; decisions (identity, leases,
// policy) stay in berthd. It outlives a berthd restart: the next berthd
// connects, reads the endpoint's hello and adopts it when its build and
// config match, or tells it to exit and starts a fresh one.

export interface EndpointConfig {
  network: string;
  /** The endpoint's in-subnet address; DHCP server id and metadata fallback. */
  serviceIp: string;
  metadataIp: string;
  metadataPort: number;
  dhcpPort: number;
  logLevel: string;
  /** The metadata service's limit per guest (source address). */
  metadataRate: { perSecond: number; burst: number };
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
  /** Close the listeners and exit: the network is gone or the endpoint is replaced. */
  | { t: 'exit' }
  /** Forget cached callers: by IP, by MAC (moved to another port), or all. */
  | { t: 'invalidate'; ips?: string[]; macs?: string[]; all?: boolean }
  | { t: 'dhcp-send'; data: Buffer; address: string; port: number };

/** endpoint -> berthd, no answer expected. */
export type Report =
  /** First message on every new control connection. */
  | Hello
  /** The ports actually bound (0 when that listener could not start). */
  | { t: 'ready'; dhcpPort: number; metadataPort: number }
  | { t: 'dhcp-packet'; data: Buffer; address: string; port: number }
  | { t: 'log'; level: 'info' | 'warn' | 'error'; msg: string; fields?: Record<string, unknown> };

export interface Hello {
  t: 'hello';
  pid: number;
  /** The endpoint code's build (see build-id.ts); a different build is replaced. */
  build: string;
  /** Inode of the endpoint's network namespace: a namespace re-created under the same name differs. */
  netnsInode: number;
  /** Undefined until berthd sent one: a fresh endpoint. */
  config?: EndpointConfig;
  ports?: { dhcp: number; metadata: number };
}

export type ParentMessage = Notice | RpcResponse;
export type ChildMessage = Report | RpcRequest;

export const METADATA_IP = '169.254.169.254';
