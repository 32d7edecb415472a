// The one seam between berthd and the kernel for security groups. The real
// adapter (nft + conntrack) is the default; unit tests of the logic around it
// may inject a fake, which never counts as a test of enforcement.
import type { ObserveLogger } from '../observe/monitor.js';
import type { SecGroupState, SgFlowCut, SgMode } from './state.js';

export interface SgCounter {
  ifname: string;
  /** A rule id, or `drop` for the port's final drop. */
  rule: string;
  packets: number;
  bytes: number;
}

export interface SgApplyReport {
  /** Something on the host changed (false on a second apply of the same state). */
  changed: boolean;
  /** Failures gathered, each `could not <verb> <object> "x": <cause>`; the rest was still applied. */
  errors: string[];
}

export interface SgApplyOptions {
  /**
   * Diff against the tables as read back now, not against what this
   * process's last write left: for the periodic reconcile and the watch's
   * heal (reading 1000 ports' tables back takes ~1 s).
   */
  read?: boolean;
}

export interface SecGroupDriver {
  /** The data path this kernel supports; throws BERTH_ERR_HOST_OP naming the missing feature when none. */
  mode(): Promise<SgMode>;
  /**
   * Reconciles the host towards `desired`: idempotent, adds before it deletes,
   * changes a set's members as element updates (never a rule rewrite), and
   * touches only tables carrying berth's prefix.
   */
  apply(desired: SecGroupState, options?: SgApplyOptions): Promise<SgApplyReport>;
  /** Ends the tracked flows of these (src → dst) pairs: a source that left a group loses its connections. */
  cutFlows(cuts: SgFlowCut[]): Promise<void>;
  counters(): Promise<SgCounter[]>;
  /** Removes everything apply created (berthd's `--teardown`, tests). */
  remove(): Promise<void>;
  /**
   * Restores the tables whenever something else changes them (as `nft flush
   * ruleset` does), from the last state applied; returns the stop function.
   */
  watchTables(logger?: ObserveLogger): () => void;
}
