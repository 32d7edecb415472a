// The metadata HTTP app over a backend that stands in for berthd: one caller
// view made the way the endpoint makes it (viewOf), refusals and passwords
// kept in memory for the test to read. For unit tests through fastify inject.
import { compileRules, type PolicyRecord } from '../../agent/auth/policy.js';
import { type InstanceDoc, identityDocument } from '../../agent/metadata/doc.js';
import { viewOf } from '../../agent/metadata/endpoint-cache.js';
import { buildMetadataApp, type CallerView, type Refusal } from '../../agent/metadata/http.js';
import { generateKeys } from '../../agent/metadata/keys.js';

export const tokenKey = Buffer.from(generateKeys().token_key, 'base64');

/** The Host header a guest's client sends. */
export const H = { host: '169.254.169.254' };

export function instanceDoc(
  id: string,
  mac: string,
  ip: string,
  extra: Partial<InstanceDoc> = {},
): InstanceDoc {
  const base: Omit<InstanceDoc, 'identity'> = {
    id,
    uuid: `uuid-${id}`,
    name: `vm-${id}`,
    hostname: `vm-${id}`,
    runtime: 'netns',
    network: { name: 'default', subnet: '10.77.0.0/24', gateway: '10.77.0.1', mtu: 1500, dns: ['10.77.0.1'] },
    mac,
    ip,
    port: `port-${id}`,
    sshKeys: [{ name: 'alice', key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake alice@host' }],
    meta: { env: 'test' },
    hostId: 'hv-test',
    createdAt: '2026-01-01T00:00:00.000Z',
    ...extra,
  };
  return { ...base, identity: { document: identityDocument(base), signature: 'x' } };
}

export function callerView(
  d: InstanceDoc,
  policies: PolicyRecord[] = [],
  tokens: 'optional' | 'required' = 'optional',
): CallerView {
  return viewOf('default', d.ip, {
    ok: true,
    mac: d.mac,
    port: d.port,
    instance: d.id,
    identity: `instance:${d.id}`,
    doc: d,
    rules: compileRules(policies, {
      instance: d.id,
      name: d.name,
      mac: d.mac,
      ...(d.role ? { role: d.role } : {}),
    }),
    tokens,
    tokenKey,
  });
}

/** An app whose caller is whichever view `current` holds; inject's source IP is 127.0.0.1. */
export function metadataHarness(first: CallerView) {
  const state = {
    current: first,
    refusals: [] as Refusal[],
    passwords: new Map<string, string>(),
    minted: [] as { instance: string; audience: string }[],
  };
  const { app, stats } = buildMetadataApp({
    lookup: () => ({ ok: true, view: state.current }),
    refuse: async (r) => {
      state.refusals.push(r);
    },
    identityToken: async (v, audience) => {
      state.minted.push({ instance: v.instance, audience });
      return { status: 200, message: 'ok', token: `jwt-for-${v.instance}` };
    },
    postPassword: async (v, value) => {
      if (state.passwords.has(v.instance)) return { status: 409, message: 'the password is already set' };
      state.passwords.set(v.instance, value);
      return { status: 200, message: 'ok' };
    },
  });
  return { app, stats, state };
}
