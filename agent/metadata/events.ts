// Maintenance notices as a guest reads them: EC2's
// `meta-data/events/maintenance/scheduled` (a JSON array in EC2's exact
// shape, so tools written for EC2 read berth's notices unchanged) and
// berth's own `/berth/events` (the same notices with whether this guest has
// acknowledged each). Pure: berthd puts the notices into the instance's
// document, the endpoint renders them like any other item (so both paths
// carry an ETag that changes when a notice does, and long-poll can wait on them).

/** EC2's event codes (DescribeInstanceStatus' InstanceStatusEvent.code). */
export const EVENT_CODES = [
  'instance-reboot',
  'system-reboot',
  'system-maintenance',
  'instance-retirement',
  'instance-stop',
] as const;
export type EventCode = (typeof EVENT_CODES)[number];

/** The guest's path of its notices, under which it acknowledges one (POST /berth/events/<id>/ack). */
export const BERTH_EVENTS_PATH = '/berth/events';
/** `POST /berth/events/instance-event-<hex>/ack`, after path normalization. */
export const ACK_PATH_RE = /^\/berth\/events\/(instance-event-[0-9a-f]{17})\/ack\/?$/;
/** EC2's event ids: `instance-event-` and 17 hex digits. */
export const EVENT_ID_RE = /^instance-event-[0-9a-f]{17}$/;

/** One notice as it goes into an instance's document (plain data: it crosses the IPC channel). */
export interface EventView {
  id: string;
  code: EventCode;
  description: string;
  /** ISO 8601, UTC. */
  notBefore: string;
  notAfter: string;
  /** `host`: a drain, on every instance of the host; `instance`: this instance's own. */
  scope: 'instance' | 'host';
  /** When this guest acknowledged it (ISO), if it has. */
  acknowledgedAt?: string;
}

/** EC2's timestamp in these documents: `21 Jan 2019 09:00:43 GMT`. */
export function ec2Time(iso: string): string {
  // toUTCString: `Mon, 21 Jan 2019 09:00:43 GMT`; EC2 leaves out the weekday.
  return new Date(iso).toUTCString().replace(/^[A-Za-z]{3}, /, '');
}

/** `meta-data/events/maintenance/scheduled`: EC2's array, `[]` when there is none. */
export function ec2Scheduled(events: readonly EventView[]): string {
  const rows = events.map((e) => ({
    NotBefore: ec2Time(e.notBefore),
    Code: e.code,
    Description: e.description,
    EventId: e.id,
    NotAfter: ec2Time(e.notAfter),
    State: 'active',
  }));
  return `${JSON.stringify(rows, null, 2)}\n`;
}

/** `/berth/events`: berth's view, ISO times, with the acknowledgement. */
export function berthEvents(events: readonly EventView[]): string {
  const rows = events.map((e) => ({
    id: e.id,
    code: e.code,
    description: e.description,
    not_before: e.notBefore,
    not_after: e.notAfter,
    scope: e.scope,
    state: 'active',
    ...(e.acknowledgedAt ? { acknowledged_at: e.acknowledgedAt } : {}),
  }));
  return `${JSON.stringify({ events: rows })}\n`;
}
