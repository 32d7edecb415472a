// Rows against the metadata HTTP listener itself: requests too large or not
// HTTP at all, and one guest flooding it. The listener must refuse the first
// without reaching the handler and keep serving; under a flood every other
// guest must still be answered, the flooder is held to its rate limit, and
// its refusals must not fill the audit log (a record a second standing for
// its count, capped per port per second and summarised).
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { DEFAULT_METADATA_RATE } from '../../agent/metadata/rate-limit.js';
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
  'another guest is answered throughout while one guest floods; the flooder is held to its rate limit (429 past its burst), and its refusals are recorded a few per second, each standing for its count, not one record each',
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
    const [plain, foreignHost] = await floods;
    await sleep(2500); // counted refusals are written once their second is over
    const records = (await auditSince(lab, cursor)).filter((r) => r.port === flooder.port);
    const written = records.filter((r) => r.event === 'metadata.request');
    const stoodFor = written.reduce(
      (n, r) => n + Number((r.detail as { count?: number } | undefined)?.count ?? 1),
      0,
    );
    const summarised = records
      .filter((r) => r.event === 'metadata.suppressed')
      .reduce((n, r) => n + Number((r.detail as { count?: number } | undefined)?.count ?? 0), 0);
    const limited = written.filter((r) => (r.detail as { status?: number } | undefined)?.status === 429);
    const refused = plain.non2xx + foreignHost.non2xx;
    const served = plain.requests - plain.non2xx;
    // Both floods share the flooder's one bucket: its burst, then its rate, for the flood and a second of slack.
    const { perSecond, burst } = DEFAULT_METADATA_RATE;
    const ceiling = burst + perSecond * (FLOOD_SECONDS + 1);
    const worst = Math.max(...samples.map((s) => s.ms));
    const cap = 10 * (FLOOD_SECONDS + 2);
    return [
      see(warm.status === 200, `control: the victim before the flood: ${warm.status}`),
      see(
        plain.requests + foreignHost.requests > 2000 && served > 0 && served <= ceiling,
        `flood: ${plain.requests + foreignHost.requests} requests in ${FLOOD_SECONDS} s; ${served} served (limit ${perSecond}/s, burst ${burst}: at most ${ceiling}), ${refused} refused`,
      ),
      see(
        samples.length >= 3 && samples.every((s) => s.status === 200 && s.mine),
        `the victim meanwhile: ${samples.filter((s) => s.status === 200 && s.mine).length}/${samples.length} answered with its own data, median ${median(samples.map((s) => s.ms)).toFixed(0)} ms, slowest ${worst.toFixed(0)} ms`,
      ),
      see(
        limited.length > 0 && limited.every((r) => r.instance === flooder.id),
        `audit: ${limited.length} rate-limit records, each naming the flooder`,
      ),
      see(
        written.length <= cap && stoodFor + summarised >= 0.9 * refused,
        `audit: ${written.length} records (cap ${cap}) standing for ${stoodFor} refusals, ${summarised} more summarised, of ${refused}`,
      ),
    ];
  },
);
