// One audit record, as written to the store, the spill and the wire.

export type AuditOutcome = 'refused' | 'allowed' | 'info';

export interface AuditInput {
  /** What happened, dotted: "admin.request", "dhcp.discover", "metadata.get". */
  event: string;
  outcome: AuditOutcome;
  reason: string;
  /** Who and where, as far as the host observed it. */
  mac?: string;
  port?: string;
  ip?: string;
  network?: string;
  instance?: string;
  identity?: string;
  path?: string;
  /** The admin socket's peer process (admin.* records), as the kernel reports it. */
  peer?: { pid: number; uid: number; gid: number };
  detail?: Record<string, unknown>;
  /** When it happened, if earlier than now: a refusal an endpoint queued while berthd was away. */
  time?: string;
}

export interface AuditRecord extends AuditInput {
  seq: number;
  time: string;
}
