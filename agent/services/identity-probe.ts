// What an endpoint answers on 169.254.169.254 until the metadata service
// lands: the caller's identity as the host observed it (source IP -> MAC ->
// bridge port -> instance), at /berth/identity. Refusals are audited.

import type { Observer } from '../daemon/services.js';
import type { AuditLog } from '../audit/audit-log.js';

export interface ProbeRequest {
  ip: string;
  method: string;
  path: string;
  host: string;
}

export interface ProbeAnswer {
  status: number;
  body: string;
  contentType: string;
}

export function identityProbe(observer: Observer, audit: AuditLog) {
  return async (network: string, params: unknown): Promise<ProbeAnswer> => {
    const req = params as ProbeRequest;
    const who = await observer.resolve(network, req.ip);
    if (!who.ok) {
      await audit.append({
        event: 'metadata.request',
        outcome: 'refused',
        reason: who.reason,
        network,
        ip: req.ip,
        ...(who.mac ? { mac: who.mac } : {}),
        ...(who.port ? { port: who.port } : {}),
        path: req.path,
      });
      return { status: 403, contentType: 'text/plain', body: `refused: ${who.reason}\n` };
    }
    if (req.path !== '/berth/identity') {
      return {
        status: 404,
        contentType: 'text/plain',
        body: 'not found: the metadata trees land with the metadata service\n',
      };
    }
    return {
      status: 200,
      contentType: 'application/json',
      body: `${JSON.stringify({ instance: who.instance, mac: who.mac, port: who.port, network, ip: req.ip })}\n`,
    };
  };
}
