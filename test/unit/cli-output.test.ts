import t from 'tap';
import { NotImplementedError, reportError, table, UsageError } from '../../agent/cli/output.js';
import { ClientError } from '../../agent/client/client.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s) }, out, err };
}

t.test('exit codes: 1 refused, 2 usage, 3 unreachable or not there yet', async (t) => {
  const cases: [unknown, number, string][] = [
    [
      new ClientError('BERTH_ERR_CONFLICT', 'could not delete network "a": in use', 409),
      1,
      'BERTH_ERR_CONFLICT',
    ],
    [new ClientError('BERTH_ERR_INTERNAL', 'boom', 500), 1, 'BERTH_ERR_INTERNAL'],
    [
      new ClientError('BERTH_ERR_DAEMON_UNREACHABLE', 'could not reach berthd', 0),
      3,
      'BERTH_ERR_DAEMON_UNREACHABLE',
    ],
    [new ClientError('BERTH_ERR_NOT_IMPLEMENTED', 'later', 501), 3, 'BERTH_ERR_NOT_IMPLEMENTED'],
    [new UsageError('--limit: "x" is not a non-negative integer'), 2, 'BERTH_ERR_INVALID_ARGUMENT'],
    [new NotImplementedError('berthctl x y'), 3, 'BERTH_ERR_NOT_IMPLEMENTED'],
    [new Error('odd'), 1, 'BERTH_ERR_INTERNAL'],
  ];
  for (const [err, code, name] of cases) {
    const json = capture();
    t.equal(reportError(json.io, err, true), code, name);
    t.equal(JSON.parse(json.out[0] as string).error.code, name);
    const text = capture();
    reportError(text.io, err, false);
    t.match(text.err[0], /^berthctl: /);
  }
  const withField = capture();
  reportError(
    withField.io,
    new ClientError('BERTH_ERR_INVALID_ARGUMENT', 'subnet: bad', 400, 'subnet'),
    true,
  );
  t.same(JSON.parse(withField.out[0] as string), {
    error: { code: 'BERTH_ERR_INVALID_ARGUMENT', message: 'subnet: bad', field: 'subnet' },
  });
});

t.test('tables align columns and show missing cells as -', async (t) => {
  t.equal(
    table(
      ['A', 'BB'],
      [
        ['x', undefined],
        ['long', 2],
      ],
    ),
    'A     BB\nx     -\nlong  2',
  );
});
