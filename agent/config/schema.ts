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

export const ClusterConfig = Type.Object(
  {
    /** etcd client URLs; several, so one member down changes nothing. */
    etcd: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { minItems: 1, maxItems: 16 }),
    /** Every key berth keeps in etcd starts with this; one etcd may serve several clusters. */
    prefix: Type.Optional(Type.String({ pattern: '^/[A-Za-z0-9._/-]*/$', maxLength: 64 })),
    tls: Type.Optional(
      Type.Object(
        {
          ca_file: Type.String({ minLength: 1 }),
          cert_file: Type.Optional(Type.String({ minLength: 1 })),
          key_file: Type.Optional(Type.String({ minLength: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** The management address other hosts and operators see in `host list`. */
    address: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    /** Seconds without keep-alives before a host shows lost. */
    lease_seconds: Type.Optional(Type.Integer({ minimum: 2, maximum: 600 })),
    /** Hours a forgotten host's key still verifies the documents it signed. */
    forgotten_key_hours: Type.Optional(Type.Integer({ minimum: 0, maximum: 24 * 365 })),
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
    cluster: Type.Optional(ClusterConfig),
    /**
     * Physical network label -> this host's interface for it (Neutron's
     * physical_interface_mappings): a network's uplink names a label, so one
     * cluster-wide definition works on hosts whose NIC names differ.
     */
    physical_networks: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^[a-z][a-z0-9_-]{0,31}$' }),
        Type.String({ pattern: '^[A-Za-z0-9._-]{1,15}$' }),
      ),
    ),
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

/** Cluster mode after defaults; absent in the single-host default. */
export interface ClusterSettings {
  etcd: string[];
  prefix: string;
  tls: { ca_file: string; cert_file?: string; key_file?: string } | undefined;
  address: string | undefined;
  lease_seconds: number;
  forgotten_key_hours: number;
}

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
  /** Set: this host is one of a cluster on etcd. Unset: a single host on its own LevelDB. */
  cluster: ClusterSettings | undefined;
  physical_networks: Record<string, string>;
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
  cluster: undefined,
  physical_networks: {},
  quarantine: { mac_seconds: 3600, ip_seconds: 600 },
  networks: [{ name: 'default', subnet: '10.77.0.0/24', mtu: 1500 }],
  metadata: { rate_limit: { per_second: 200, burst: 400 } },
  audit: { reserve_bytes: 4 * 1024 * 1024 },
  metrics: { listen: '127.0.0.1:9477' },
};
