// berthd's side of a guest acknowledging a maintenance notice. The endpoint
// asks with the caller it resolved; the identity is resolved again here from
// what the host observes at the address (as for the OpenStack password), so a
// stale cached view cannot acknowledge for anyone else. A recorded ack is
// audited here with the observed identity; a refused one comes back to the
// endpoint, which refuses the request and has it audited like any refusal.
import type { AuditLog } from '../audit/audit-log.js';
import type { Observer } from '../daemon/services.js';
import type { AckResult, NoticeService } from '../services/notices.js';

export interface AckRequest {
  ip: string;
  instance: string;
  id: string;
}

export class EventAcks {
  constructor(
    private readonly o: {
      observer: Pick<Observer, 'resolve'>;
      notices: NoticeService;
      audit: AuditLog;
      identityOf: (instance: string, mac: string) => string;
    },
  ) {}

  async ack(network: string, p: Partial<AckRequest>): Promise<{ status: number; message: string }> {
    if (typeof p.ip !== 'string' || typeof p.instance !== 'string' || typeof p.id !== 'string')
      return { status: 400, message: 'malformed acknowledgement' };
    const who = await this.o.observer.resolve(network, p.ip);
    if (!who.ok || who.instance !== p.instance) return { status: 403, message: 'caller changed; retry' };
    const identity = this.o.identityOf(who.instance, who.mac);
    const r: AckResult = await this.o.notices.ack(who.instance, p.id, {
      ip: p.ip,
      mac: who.mac,
      port: who.port,
      identity,
    });
    if (r.status === 200 && r.message === 'acknowledged')
      await this.o.audit.append({
        event: 'metadata.event.ack',
        outcome: 'allowed',
        reason: `instance acknowledged maintenance notice ${p.id}`,
        network,
        ip: p.ip,
        mac: who.mac,
        port: who.port,
        instance: who.instance,
        identity,
        path: `POST /berth/events/${p.id}/ack`,
        detail: {
          event_id: p.id,
          code: r.notice?.code,
          scope: r.notice?.scope,
          not_before: r.notice?.not_before,
        },
      });
    return { status: r.status, message: r.message };
  }
}
