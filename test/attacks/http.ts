// Rows against the metadata HTTP listener itself: requests too large or not
// HTTP at all, and one guest flooding it. The listener must refuse the first
// without reaching the handler and keep serving; under a flood every other
// guest must still be answered, and the flooder's refusals must not fill the
// audit log (they are capped per port per second and summarised).
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { median } from '../../bench/lib/results.js';
import { mdGuest } from '../helpers/metadata_lab.js';
import { probe } from './guest-probe.js';
import { auditCursor, auditSince, tryCurl } from './observe.js';
import { attack, see } from './result.js';

const execFileP = promisify(execFile);
const ID = '/latest/meta-data/instance-id';

/** Raw requests probe.py builds, and the status each must get. */
const BAD_REQUESTS: [kind: string, status: number][] = [
  ['huge-header', 431],
  ['huge-url', 431],
  ['many-headers', 431],
  ['huge-body', 413],
  ['garbage', 400],
  ['bad-header-name', 400],
  ['cl-and-te', 400],
  ['bad-chunk', 400],
];

/** The status of the answer to one raw request; 0 when there was none. */
async function raw(netns: string, kind: string): Promise<number> {
  return (await probe<{ status: number }>(netns, ['http', '169.254.169.254', '80', kind])).status;
}

export const malformedHttp = attack(
  'An oversized or malformed HTTP request',
  '431 for oversized headers or URL, 413 for an oversized body, 400 for what is not HTTP or is ambiguous (Content-Length with chunked, bad chunks, bad header names); the listener keeps serving',
  async (_t, { lab, subnet }) => {
    await lab.network('mf', subnet());
    const g = await mdGuest(lab, 'mf-g', 'mf');
    const control = await raw(g.netns, 'ok');
    const got = await Promise.all(BAD_REQUESTS.map(([kind]) => raw(g.netns, kind)));
    const after = await tryCurl(g.netns, ID);
    const wrong = BAD_REQUESTS.filter(([, want], i) => got[i] !== want);
    return [
      see(control === 200, `control: a well-formed raw request: ${control}`),
      see(wrong.length === 0, BAD_REQUESTS.map(([kind], i) => `${kind} ${got[i] || 'no answer'}`).join(', ')),
      see(after.status === 200 && after.body === g.id, `afterwards the guest is served: ${after.status}`),
    ];
  },
);

interface Wrk {
  requests: number;
  non2xx: number;
}

const FLOOD_SECONDS = 3;

async function wrk(netns: string, headers: string[]): Promise<Wrk> {
  const { stdout } = await execFileP('ip', [
    ...['netns', 'exec', netns, 'wrk', '-t1', '-c50', `-d${FLOOD_SECONDS}s`],
    ...headers.flatMap((h) => ['-H', h]),
    `http://169.254.169.254${ID}`,
  ]);
  return {
    requests: Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0),
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0),
  };
}

export const requestFlood = attack(
  'A request flood from one guest',
  "another guest is answered throughout while one guest floods allowed and refused requests; the flooder's refusals are recorded a few per second and summarised, not one record each",
  async (_t, { lab, subnet }) => {
    await lab.network('fl', subnet());
    const [flooder, victim] = await Promise.all([
      mdGuest(lab, 'fl-flood', 'fl'),
      mdGuest(lab, 'fl-victim', 'fl'),
    ]);
    const warm = await tryCurl(victim.netns, ID);
    const cursor = await auditCursor(lab);
    let flooding = true;
    const floods = Promise.all([wrk(flooder.netns, []), wrk(flooder.netns, ['Host: evil.example'])]).finally(
      () => {
        flooding = false;
      },
    );
    // One victim request every 250 ms while the flood lasts, each allowed 5 s: a slow answer
    // must not thin out the samples.
    const asked: Promise<{ status: number; ms: number; mine: boolean }>[] = [];
    await sleep(300);
    while (flooding) {
      const started = performance.now();
      asked.push(
        tryCurl(victim.netns, ID, [], 5).then((r) => ({
          status: r.status,
          ms: performance.now() - started,
          mine: r.body === victim.id,
        })),
      );
      await sleep(250);
    }
    const samples = await Promise.all(asked);
    const [allowed, refused] = await floods;
    await sleep(1500); // summaries are written once a second
    const records = (await auditSince(lab, cursor)).filter((r) => r.port === flooder.port);
    const written = records.filter((r) => r.event === 'metadata.request').length;
    const summarised = records
      .filter((r) => r.event === 'metadata.suppressed')
      .reduce((n, r) => n + Number((r.detail as { count?: number } | undefined)?.count ?? 0), 0);
    const worst = Math.max(...samples.map((s) => s.ms));
    const cap = 10 * (FLOOD_SECONDS + 2);
    return [
      see(warm.status === 200, `control: the victim before the flood: ${warm.status}`),
      see(
        allowed.requests > 1000 && refused.non2xx > 500,
        `flood: ${allowed.requests} allowed and ${refused.non2xx} refused requests in ${FLOOD_SECONDS} s`,
      ),
      see(
        samples.length >= 3 && samples.every((s) => s.status === 200 && s.mine),
        `the victim meanwhile: ${samples.filter((s) => s.status === 200 && s.mine).length}/${samples.length} answered with its own data, median ${median(samples.map((s) => s.ms)).toFixed(0)} ms, slowest ${worst.toFixed(0)} ms`,
      ),
      see(
        written <= cap && written + summarised >= 0.9 * refused.non2xx,
        `audit: ${written} refusals recorded one by one (cap ${cap}), ${summarised} summarised`,
      ),
    ];
  },
);
