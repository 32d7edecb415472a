// What berth asks of a hypervisor. The libvirt-dbus driver implements it;
// instance services and reconcile see only this. Domains are named by their
// uuid in events (berth sets domain uuid = instance uuid), by name elsewhere.
import type { DomainOwner } from './domain-xml.js';

/** libvirt's virDomainState, by name. */
export type DomainState =
  | 'nostate'
  | 'running'
  | 'blocked'
  | 'paused'
  | 'shutdown'
  | 'shutoff'
  | 'crashed'
  | 'pmsuspended';

export const DOMAIN_STATES: readonly DomainState[] = [
  'nostate',
  'running',
  'blocked',
  'paused',
  'shutdown',
  'shutoff',
  'crashed',
  'pmsuspended',
];

/** libvirt's virDomainEventType, by name. */
export type DomainEventKind =
  | 'defined'
  | 'undefined'
  | 'started'
  | 'suspended'
  | 'resumed'
  | 'stopped'
  | 'shutdown'
  | 'pmsuspended'
  | 'crashed';

export const DOMAIN_EVENT_KINDS: readonly DomainEventKind[] = [
  'defined',
  'undefined',
  'started',
  'suspended',
  'resumed',
  'stopped',
  'shutdown',
  'pmsuspended',
  'crashed',
];

export type HypervisorEvent =
  | {
      type: 'domain';
      kind: DomainEventKind;
      /** libvirt's detail code for the kind (e.g. stopped: 0 shutdown, 1 destroyed, 5 failed). */
      detail: number;
      uuid: string;
      /** Known when the driver has seen the domain before (always for berth's own). */
      name?: string;
    }
  /**
   * The connection to the hypervisor was lost and is back: events in between
   * may be missing, so listeners re-read the state of what they track.
   */
  | { type: 'resync' }
  | { type: 'disconnected'; reason: string };

export interface DomainInfo {
  name: string;
  uuid: string;
  state: DomainState;
  /** berth's tag; undefined for a domain berth did not define. */
  owner?: DomainOwner;
  macs: string[];
}

export interface Hypervisor {
  /** Defines (or redefines) a persistent domain; returns its uuid. */
  define(xml: string): Promise<string>;
  start(name: string): Promise<void>;
  /** Asks the guest to shut down (ACPI); returns at once. */
  shutdown(name: string): Promise<void>;
  reboot(name: string): Promise<void>;
  /** Pulls the plug. A domain that is not running (or does not exist) is success. */
  destroy(name: string): Promise<void>;
  /** Removes the definition. A domain that does not exist is success. */
  undefine(name: string): Promise<void>;
  /** The domain's state, or undefined when libvirt has no such domain. */
  state(name: string): Promise<DomainState | undefined>;
  /** Every domain libvirt knows, or only those carrying berth's tag (optionally for one prefix). */
  list(filter?: { owned?: boolean; prefix?: string }): Promise<DomainInfo[]>;
  /** MACs of every domain libvirt knows, berth's or not: the MAC pool must never hand them out. */
  macs(): Promise<Set<string>>;
  /** Subscribes to lifecycle events; returns the unsubscribe function. */
  onEvent(listener: (event: HypervisorEvent) => void): () => void;
  close(): Promise<void>;
}
