// What the guard enforces: the guest ports and the endpoints, as the
// reconciler hands them over. Kept apart so validation and rendering share it.
import type { GuardEndpoint } from './render-edges.js';

export interface GuardPort {
  /** The tap or root-side veth on the bridge; must carry the owned port prefix. */
  ifname: string;
  mac: string;
  ipv4: string;
  network: string;
  bridge: string;
  /** Assigned global IPv6 addresses; the EUI-64 link-local is always allowed. */
  ipv6?: readonly string[];
}

export interface GuardState {
  ports: readonly GuardPort[];
  endpoints: readonly GuardEndpoint[];
}
