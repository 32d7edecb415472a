// A SecGroupDriver that records what it was asked, for unit tests of the
// logic around enforcement. Enforcement itself is tested with real traffic
// (test/netns/secgroups-*.test.ts); this never counts as that.
import type { SecGroupDriver, SgCounter } from '../../hostnet/secgroups/driver.js';
import type { SecGroupState, SgFlowCut, SgMode } from '../../hostnet/secgroups/state.js';

export class FakeSecGroupDriver implements SecGroupDriver {
  applies: SecGroupState[] = [];
  cuts: SgFlowCut[][] = [];
  watches = 0;
  /** What counters() answers. */
  counterValues: SgCounter[] = [];
  /** The next this many applies throw. */
  fail = 0;
  async mode(): Promise<SgMode> {
    return 'br-netfilter';
  }
  async apply(s: SecGroupState) {
    if (this.fail > 0) {
      this.fail--;
      throw new Error('nft: boom');
    }
    this.applies.push(s);
    return { changed: true, errors: [] };
  }
  async cutFlows(c: SgFlowCut[]) {
    this.cuts.push(c);
  }
  async counters(): Promise<SgCounter[]> {
    return this.counterValues;
  }
  async remove() {}
  watchTables() {
    this.watches++;
    return () => {};
  }
}
