import { readFileSync } from 'node:fs';
import t from 'tap';
import { BerthError, couldNot, ERROR_CATALOG, invalidField } from '../../base/errors.js';

t.test(
  'every catalog code is documented in docs/errors.md with its status, and nothing else is',
  async (t) => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/^## (BERTH_ERR_[A-Z_]+)\n\nHTTP (\d{3})\./gm)].map((m) => [
      m[1],
      Number(m[2]),
    ]);
    t.same(
      documented,
      Object.entries(ERROR_CATALOG).map(([code, spec]) => [code, spec.status]),
    );
    for (const code of Object.keys(ERROR_CATALOG)) t.match(code, /^BERTH_ERR_[A-Z_]+$/);
  },
);

t.test('messages follow "could not <verb> <object> "x": <cause>" and keep the cause', async (t) => {
  const cause = new Error('File exists');
  const err = couldNot('BERTH_ERR_HOST_OP', 'create', 'bridge', 'bthb1', cause);
  t.equal(err.message, 'could not create bridge "bthb1": File exists');
  t.equal(err.cause, cause);
  t.equal(err.status, 500);
  t.same(err.toJSON(), {
    code: 'BERTH_ERR_HOST_OP',
    message: 'could not create bridge "bthb1": File exists',
  });
  const bad = invalidField('networks[0].subnet', 'is not a CIDR');
  t.same(bad.toJSON(), {
    code: 'BERTH_ERR_INVALID_ARGUMENT',
    message: 'networks[0].subnet: is not a CIDR',
    field: 'networks[0].subnet',
  });
  t.equal(bad.status, 400);
});

t.test('instanceof works through the brand, not the class identity', async (t) => {
  const err = new BerthError('BERTH_ERR_NOT_FOUND', 'x');
  t.ok(err instanceof BerthError);
  t.ok(err instanceof Error);
  t.notOk(new Error('plain') instanceof BerthError);
  t.notOk((null as unknown as object) instanceof BerthError);
  const lookalike: object = Object.assign(Object.create(null), { [Symbol.for('berth.error')]: true });
  t.ok(lookalike instanceof BerthError, 'a copy from another module instance still matches');
});
