// Turns parsed YAML into a Config or a BerthError that names the key and the reason,
// e.g. `config: networks[0].subnet: "10.0.0.0/33" is not a CIDR`.
import { Value } from 'typebox/value';
import { BerthError } from '../../base/errors.js';
import { cidrContains, cidrProblem, ipToInt, isIPv4, parseCidr } from '../../hostnet/ipv4.js';
import {
  type ClusterSettings,
  type Config,
  ConfigSchema,
  EMBEDDED_DEFAULT,
  type NetworkConfig,
  type RawConfig,
} from './schema.js';

/** "/networks/0/subnet" -> "networks[0].subnet" */
export function fieldPath(pointer: string): string {
  return pointer
    .split('/')
    .filter((part) => part !== '')
    .reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path ? `${path}.${part}` : part), '');
}

function configError(field: string, reason: string): BerthError {
  return new BerthError('BERTH_ERR_CONFIG', `config: ${field ? `${field}: ` : ''}${reason}`, { field });
}

interface SchemaError {
  keyword: string;
  schemaPath: string;
  instancePath: string;
  params: Record<string, unknown>;
  message: string;
}

/** Turns TypeBox's errors for one value into one sentence about its first problem. */
export function describeSchemaErrors(
  errors: SchemaError[],
  fail: (field: string, reason: string) => BerthError,
): BerthError {
  const first = errors[0] as SchemaError;
  const field = fieldPath(first.instancePath);
  if (
    first.keyword === 'additionalProperties' ||
    (first.keyword === 'boolean' && first.schemaPath.endsWith('additionalProperties'))
  ) {
    const extra = (first.params.additionalProperties as string[] | undefined)?.join(', ');
    return fail(extra ? (field ? `${field}.${extra}` : extra) : field, 'unknown key');
  }
  if (first.keyword === 'required') {
    const missing = (first.params.requiredProperties as string[] | undefined)?.join(', ') ?? '';
    return fail(field ? `${field}.${missing}` : missing, 'is required');
  }
  // A union of literals reports one "const" error per choice: list the choices.
  const choices = errors
    .filter((e) => e.keyword === 'const' && e.instancePath === first.instancePath)
    .map((e) => String(e.params.allowedValue));
  if (choices.length > 0) return fail(field, `must be one of ${choices.join(', ')}`);
  return fail(field, first.message);
}

export function validateNetwork(
  net: NetworkConfig,
  field: string,
  fail: (field: string, reason: string) => BerthError,
): void {
  const problem = cidrProblem(net.subnet);
  if (problem) throw fail(`${field}.subnet`, problem);
  const cidr = parseCidr(net.subnet);
  if (!cidr || cidr.prefix > 29)
    throw fail(`${field}.subnet`, `"${net.subnet}" is too small; a network needs at least a /29`);
  if (net.gateway !== undefined) {
    if (!isIPv4(net.gateway)) throw fail(`${field}.gateway`, `"${net.gateway}" is not an IPv4 address`);
    const gw = ipToInt(net.gateway);
    if (!cidrContains(cidr, gw)) throw fail(`${field}.gateway`, `"${net.gateway}" is outside ${net.subnet}`);
    if (gw === cidr.network || gw === cidr.network + 2 ** (32 - cidr.prefix) - 1) {
      throw fail(`${field}.gateway`, `"${net.gateway}" is the network or broadcast address of ${net.subnet}`);
    }
  }
  net.dns?.forEach((ip, i) => {
    if (!isIPv4(ip)) throw fail(`${field}.dns[${i}]`, `"${ip}" is not an IPv4 address`);
  });
  if (net.vlan !== undefined && net.uplink === undefined) {
    throw fail(`${field}.uplink`, 'is required when vlan is set: tagged frames need a trunk interface');
  }
}

export function validateMacPrefix(prefix: string): string | undefined {
  if (!/^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/.test(prefix))
    return `"${prefix}" is not a 3-byte MAC prefix like 0a:b7:e7`;
  const first = Number.parseInt(prefix.slice(0, 2), 16);
  if (first & 1) return `"${prefix}" is a multicast prefix; guest MACs must be unicast`;
  if (!(first & 2)) return `"${prefix}" is not locally administered (bit 0x02 of the first byte must be set)`;
  if (first === 0xfe) return `"${prefix}" starts with 0xfe, which libvirt reserves for tap devices`;
  return undefined;
}

/** "127.0.0.1:9477" or "[::1]:9477" -> host and port; undefined when it is not one. */
export function parseListen(listen: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(listen);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: (m[1] ?? m[2]) as string, port };
}

function clusterSettings(c: NonNullable<RawConfig['cluster']>): ClusterSettings {
  c.etcd.forEach((url, i) => {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || !parsed.hostname)
      throw configError(`cluster.etcd[${i}]`, `"${url}" is not a URL like http://10.0.0.1:2379`);
    if (parsed.pathname !== '/' || parsed.search)
      throw configError(`cluster.etcd[${i}]`, `"${url}" has a path; give the client URL only`);
  });
  if (c.etcd.some((u) => u.startsWith('https://')) && !c.tls)
    throw configError('cluster.tls', 'is required for https:// endpoints (ca_file at least)');
  if (c.tls && (c.tls.cert_file === undefined) !== (c.tls.key_file === undefined))
    throw configError('cluster.tls', 'cert_file and key_file go together');
  return {
    etcd: [...c.etcd],
    prefix: c.prefix ?? '/berth/',
    tls: c.tls ? { ...c.tls } : undefined,
    address: c.address,
    lease_seconds: c.lease_seconds ?? 10,
    forgotten_key_hours: c.forgotten_key_hours ?? 24 * 7,
  };
}

export function validateConfig(raw: unknown): Config {
  const input = raw ?? {};
  if (typeof input !== 'object' || Array.isArray(input))
    throw configError('', 'the top level must be a mapping');
  const errors = Value.Errors(ConfigSchema, input) as SchemaError[];
  if (errors.length > 0) throw describeSchemaErrors(errors, configError);
  const cfg = input as RawConfig;

  const networks = cfg.networks ?? EMBEDDED_DEFAULT.networks;
  const names = new Set<string>();
  networks.forEach((net, i) => {
    validateNetwork(net, `networks[${i}]`, configError);
    if (names.has(net.name)) throw configError(`networks[${i}].name`, `"${net.name}" is declared twice`);
    names.add(net.name);
  });
  const pools = cfg.mac_pools ?? EMBEDDED_DEFAULT.mac_pools;
  pools.forEach((pool, i) => {
    const problem = validateMacPrefix(pool.prefix);
    if (problem) throw configError(`mac_pools[${i}].prefix`, problem);
  });

  const cluster = cfg.cluster ? clusterSettings(cfg.cluster) : undefined;
  const physical = cfg.physical_networks ?? {};
  const owners = new Map<string, string>();
  for (const [label, ifname] of Object.entries(physical)) {
    if (!/^[a-z][a-z0-9_-]{0,31}$/.test(label))
      throw configError(`physical_networks.${label}`, 'a label is lower case: [a-z][a-z0-9_-]{0,31}');
    const other = owners.get(ifname);
    if (other)
      throw configError(`physical_networks.${label}`, `"${ifname}" is already the interface of "${other}"`);
    owners.set(ifname, label);
  }

  const listen = cfg.metrics?.listen ?? EMBEDDED_DEFAULT.metrics.listen;
  if (listen !== '' && !parseListen(listen))
    throw configError('metrics.listen', `"${listen}" is not HOST:PORT (e.g. 127.0.0.1:9477) or ""`);

  const rate = {
    per_second: cfg.metadata?.rate_limit?.per_second ?? EMBEDDED_DEFAULT.metadata.rate_limit.per_second,
    burst: cfg.metadata?.rate_limit?.burst ?? EMBEDDED_DEFAULT.metadata.rate_limit.burst,
  };

  return {
    state_dir: cfg.state_dir ?? EMBEDDED_DEFAULT.state_dir,
    socket: cfg.socket ?? EMBEDDED_DEFAULT.socket,
    socket_group: cfg.socket_group ?? EMBEDDED_DEFAULT.socket_group,
    log_level: cfg.log_level ?? EMBEDDED_DEFAULT.log_level,
    host_id: cfg.host_id,
    name_prefix: cfg.name_prefix ?? EMBEDDED_DEFAULT.name_prefix,
    vlan_mode: cfg.vlan_mode ?? EMBEDDED_DEFAULT.vlan_mode,
    mac_pools: pools,
    cluster,
    physical_networks: { ...physical },
    quarantine: {
      mac_seconds: cfg.quarantine?.mac_seconds ?? EMBEDDED_DEFAULT.quarantine.mac_seconds,
      ip_seconds: cfg.quarantine?.ip_seconds ?? EMBEDDED_DEFAULT.quarantine.ip_seconds,
    },
    networks,
    metadata: { rate_limit: rate },
    audit: { reserve_bytes: cfg.audit?.reserve_bytes ?? EMBEDDED_DEFAULT.audit.reserve_bytes },
    metrics: { listen },
  };
}
