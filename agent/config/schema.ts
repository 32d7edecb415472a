// The shape of /etc/berth/berthd.yaml. Types are checked here by TypeBox;
// meaning (CIDRs, MAC prefixes, cross-field rules) is checked in validate.ts.
import { type Static, Type } from 'typebox';

const NetworkName = Type.String({ pattern: '^[a-z][a-z0-9-]{0,30}$' });

export const NetworkConfig = Type.Object(
  {
    name: NetworkName,
    subnet: Type.String(),
    gateway: Type.Optional(Type.String()),
    vlan: Type.Optional(Type.Integer({ minimum: 1, maximum: 4094 })),
    uplink: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{1,15}$' })),
    mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9216 })),
    dns: Type.Optional(Type.Array(Type.String())),
    domain: Type.Optional(Type.String({ pattern: '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$' })),
  },
  { additionalProperties: false },
);

export const MacPoolConfig = Type.Object(
  {
    /** The first three bytes; berth hands out the lower three. */
    prefix: Type.String(),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    state_dir: Type.Optional(Type.String({ minLength: 1 })),
    socket: Type.Optional(Type.String({ minLength: 1 })),
    socket_group: Type.Optional(Type.String({ minLength: 1 })),
    log_level: Type.Optional(
      Type.Union([
        Type.Literal('trace'),
        Type.Literal('debug'),
        Type.Literal('info'),
        Type.Literal('warn'),
        Type.Literal('error'),
      ]),
    ),
    host_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' })),
    name_prefix: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9]{1,3}$' })),
    vlan_mode: Type.Optional(
      Type.Union([Type.Literal('auto'), Type.Literal('filtering'), Type.Literal('subinterface')]),
    ),
    mac_pools: Type.Optional(Type.Array(MacPoolConfig, { minItems: 1 })),
    quarantine: Type.Optional(
      Type.Object(
        {
          mac_seconds: Type.Optional(Type.Integer({ minimum: 0 })),
          ip_seconds: Type.Optional(Type.Integer({ minimum: 0 })),
        },
        { additionalProperties: false },
      ),
    ),
    networks: Type.Optional(Type.Array(NetworkConfig)),
    metadata: Type.Optional(
      Type.Object(
        {
          /** Per guest (source address): requests a second, and the burst a quiet guest may send. */
          rate_limit: Type.Optional(
            Type.Object(
              {
                per_second: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
                burst: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    audit: Type.Optional(
      Type.Object(
        {
          /** The audit reserve for a full state disk (agent/audit/audit-spill.ts); 0: none. */
          reserve_bytes: Type.Optional(
            Type.Union([Type.Literal(0), Type.Integer({ minimum: 65_536, maximum: 1 << 30 })]),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    metrics: Type.Optional(
      Type.Object(
        {
          /** HOST:PORT for GET /metrics; "" turns the listener off. */
          listen: Type.Optional(Type.String()),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type RawConfig = Static<typeof ConfigSchema>;
export type NetworkConfig = Static<typeof NetworkConfig>;

/** The config after defaults: every optional knob has its value. */
export interface Config {
  state_dir: string;
  socket: string;
  socket_group: string;
  log_level: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  host_id: string | undefined;
  /** Prefix of every interface, namespace and nft table berth owns on this host. */
  name_prefix: string;
  vlan_mode: 'auto' | 'filtering' | 'subinterface';
  mac_pools: { prefix: string }[];
  quarantine: { mac_seconds: number; ip_seconds: number };
  networks: NetworkConfig[];
  /** The metadata service's per-guest rate limit. */
  metadata: { rate_limit: { per_second: number; burst: number } };
  /** Bytes preallocated for audit records while the state disk is full; 0 for none. Needs a restart. */
  audit: { reserve_bytes: number };
  /** Prometheus metrics listener; `listen` is HOST:PORT or "" for none. */
  metrics: { listen: string };
}

export const DEFAULT_CONFIG_PATH = '/etc/berth/berthd.yaml';

/**
 * The embedded default used when no config file exists: one flat network
 * and a locally administered, unicast MAC prefix (0x0a: bit 1 set, bit 0 clear).
 */
export const EMBEDDED_DEFAULT: Config = {
  state_dir: '/var/lib/berth',
  socket: '/run/berth/berthd.sock',
  socket_group: 'berth',
  log_level: 'info',
  host_id: undefined,
  name_prefix: 'bth',
  vlan_mode: 'auto',
  mac_pools: [{ prefix: '0a:b7:e7' }],
  quarantine: { mac_seconds: 3600, ip_seconds: 600 },
  networks: [{ name: 'default', subnet: '10.77.0.0/24', mtu: 1500 }],
  metadata: { rate_limit: { per_second: 200, burst: 400 } },
  audit: { reserve_bytes: 4 * 1024 * 1024 },
  metrics: { listen: '127.0.0.1:9477' },
};
