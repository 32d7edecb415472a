// The endpoint's refusal queue: refusals go straight to berthd while it is
// there, are queued (with their time) while it is not, and are handed to the
// next berthd in order; past the bound they are counted, and the count is
// delivered too. A delivery that fails is kept for the next one.
import t from 'tap';
import { DELIVER_METHOD, type RefusalDelivery, RefusalQueue } from '../../agent/endpoint/refusal-queue.js';

function harness(limit = 3) {
  const calls: { method: string; params: unknown }[] = [];
  const state = { connected: true, fail: false, clock: Date.parse('2026-01-01T00:00:00Z') };
  const q = new RefusalQueue({
    limit,
    retryMs: 20,
    connected: () => state.connected,
    now: () => new Date(state.clock),
    call: async (method, params) => {
      if (state.fail) throw new Error('berthd did not answer');
      calls.push({ method, params });
      return true;
    },
  });
  return { q, calls, state };
}

t.test('with berthd there, a refusal goes straight to it, stamped with its time', async (t) => {
  const { q, calls } = harness();
  await q.report({ ip: '10.0.0.2', status: 403, reason: 'r', path: 'GET /' });
  t.same(calls, [
    {
      method: 'metadata.refused',
      params: { ip: '10.0.0.2', status: 403, reason: 'r', path: 'GET /', time: '2026-01-01T00:00:00.000Z' },
    },
  ]);
  t.equal(q.size, 0);
});

t.test('without berthd: queued in order, bounded, the rest counted, all delivered to the next', async (t) => {
  const { q, calls, state } = harness(3);
  state.connected = false;
  for (let i = 0; i < 5; i++) {
    await q.report({ reason: `r${i}` });
    state.clock += 1000;
  }
  t.equal(calls.length, 0, 'nothing sent while no berthd is connected');
  t.equal(q.size, 3, 'the queue holds its bound');
  t.equal(q.droppedCount, 2, 'the rest is counted');
  state.connected = true;
  await q.deliver();
  t.equal(calls.length, 1, 'one call hands over the whole queue');
  t.equal(calls[0]?.method, DELIVER_METHOD);
  const d = calls[0]?.params as RefusalDelivery;
  t.same(
    d.refusals.map((r) => [r.reason, r.time]),
    [
      ['r0', '2026-01-01T00:00:00.000Z'],
      ['r1', '2026-01-01T00:00:01.000Z'],
      ['r2', '2026-01-01T00:00:02.000Z'],
    ],
    'oldest first, each with the time it was made',
  );
  t.same(d.dropped, { count: 2, since: '2026-01-01T00:00:03.000Z', until: '2026-01-01T00:00:04.000Z' });
  t.equal(q.size, 0);
  t.equal(q.droppedCount, 0);
  await q.deliver();
  t.equal(calls.length, 1, 'an empty queue sends nothing');
});

t.test('a refusal whose call fails is queued; a failed delivery is kept for the next berthd', async (t) => {
  const { q, calls, state } = harness(2);
  state.fail = true;
  await q.report({ reason: 'a' });
  t.equal(q.size, 1, 'berthd went away mid-call: queued');
  await q.report({ reason: 'b' });
  t.equal(q.size, 2, 'behind a waiting queue a new refusal waits too (order)');
  await q.deliver();
  await q.report({ reason: 'c' });
  t.same([q.size, q.droppedCount], [2, 1], 'the failed delivery is back, within the bound');
  state.fail = false;
  await new Promise((r) => setTimeout(r, 100));
  t.equal(calls.length, 1, 'retried by itself while berthd stays connected');
  const d = calls[0]?.params as RefusalDelivery;
  t.same(
    d.refusals.map((r) => r.reason),
    ['a', 'b'],
  );
  t.equal(d.dropped?.count, 1);
});
