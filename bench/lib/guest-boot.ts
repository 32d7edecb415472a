// What a netns guest does when it "boots" in a storm: busybox udhcpc takes a
// lease (test/helpers/dhcp_lab.ts's script configures the address and option
// 121 routes, as Alpine's does), then curl reads the EC2 meta-data listing
// and every key in it over one connection. The same script runs against berth and against the peer.
// udhcpc asks for option 121 (-O staticroutes), as cloud images' clients do:
// dnsmasq sends only the options a client asks for.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UDHCPC_SCRIPT } from '../../test/helpers/dhcp_lab.js';
import { timed } from './proc.js';
import { percentile } from './results.js';

// Exit codes say which step failed: 10 DHCP, 11 the listing, 12 a key. A
// failed step prints why: curl's own exit code (28 a timeout, 7 no
// connection) or the HTTP status it got. Every body is followed by a marker
// line naming its URL and status, so the benchmark can check each guest got
// its own instance-id, every key answered 200, and keep the bytes.
const BOOT_SCRIPT = `#!/bin/sh
t0=$(date +%s%N)
udhcpc -i eth0 -n -q -t 10 -T 1 -O staticroutes -s "$1" >/dev/null 2>&1 || exit 10
t1=$(date +%s%N)
md=http://169.254.169.254/latest/meta-data/
out=$(curl -s --max-time 15 -w '\\n@@%{http_code}' "$md") || { echo "@@fail listing curl=$?"; exit 11; }
code=\${out##*@@}
[ "$code" = 200 ] || { echo "@@fail listing http=$code"; exit 11; }
keys=\${out%@@*}
keys=\${keys%?}
printf '%s\\n@@200 %s\\n' "$keys" "$md"
urls=""
for k in $keys; do urls="$urls $md$k"; done
curl -s --max-time 30 -w '\\n@@%{http_code} %{url_effective}\\n' $urls || { echo "@@fail keys curl=$?"; exit 12; }
echo "@@phases $t0 $t1 $(date +%s%N)"
`;

export interface BootScripts {
  udhcpc: string;
  boot: string;
}

export function writeBootScripts(dir: string): BootScripts {
  const udhcpc = join(dir, 'udhcpc.sh');
  const boot = join(dir, 'boot.sh');
  writeFileSync(udhcpc, UDHCPC_SCRIPT, { mode: 0o755 });
  writeFileSync(boot, BOOT_SCRIPT, { mode: 0o755 });
  return { udhcpc, boot };
}

export interface GuestBoot {
  netns: string;
  ok: boolean;
  /** Exit code of the boot script (10 DHCP, 11 listing, 12 a key). */
  code: number;
  ms: number;
  /** The two phases, from the guest's own clock: udhcpc, then the meta-data tree (NaN when it failed). */
  dhcpMs: number;
  metadataMs: number;
  /** meta-data path ("" for the listing, "instance-id", "placement/") to body. */
  tree: Map<string, string>;
  /** Why it failed, in a few words ("listing curl=22"); "" when it did not. */
  why: string;
}

/** Splits the boot script's output into path → body (200s) and the paths that answered otherwise. */
export function parseTree(stdout: string): { tree: Map<string, string>; refused: string[] } {
  const tree = new Map<string, string>();
  const refused: string[] = [];
  const marker = /\n?@@(\d{3}) http:\/\/169\.254\.169\.254\/latest\/meta-data\/(\S*)\n/g;
  let from = 0;
  for (let m = marker.exec(stdout); m; m = marker.exec(stdout)) {
    if (m[1] === '200') tree.set(m[2] as string, stdout.slice(from, m.index));
    else refused.push(`${m[2]} http=${m[1]}`);
    from = m.index + m[0].length;
  }
  return { tree, refused };
}

/** Every guest boots at once; `expect(guest, tree)` says whether its answers are its own. */
export async function bootStorm(
  netns: string[],
  scripts: BootScripts,
  expect: (netns: string, tree: Map<string, string>) => boolean,
): Promise<{ seconds: number; boots: GuestBoot[] }> {
  const start = process.hrtime.bigint();
  const boots = await Promise.all(
    netns.map(async (ns) => {
      const r = await timed(['ip', 'netns', 'exec', ns, 'sh', scripts.boot, scripts.udhcpc]);
      const { tree, refused } = parseTree(r.stdout);
      const ok = r.code === 0 && refused.length === 0 && expect(ns, tree);
      const why = ok
        ? ''
        : r.code === 10
          ? 'no DHCP lease'
          : r.code !== 0
            ? (/@@fail (.*)/.exec(r.stdout)?.[1] ?? `exit ${r.code}`)
            : refused.length > 0
              ? `key ${refused[0]}`
              : 'not its own instance-id';
      const t = /@@phases (\d+) (\d+) (\d+)/.exec(r.stdout)?.slice(1).map(Number) ?? [];
      const [t0 = Number.NaN, t1 = Number.NaN, t2 = Number.NaN] = t;
      return {
        netns: ns,
        ok,
        code: r.code,
        ms: r.ms,
        dhcpMs: (t1 - t0) / 1e6,
        metadataMs: (t2 - t1) / 1e6,
        tree,
        why,
      };
    }),
  );
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, boots };
}

export interface StormFigures {
  seconds: number;
  failures: number;
  p50Ms: number;
  p99Ms: number;
}

export function stormFigures(s: { seconds: number; boots: GuestBoot[] }): StormFigures {
  const ms = s.boots.map((b) => b.ms);
  return {
    seconds: s.seconds,
    failures: s.boots.filter((b) => !b.ok).length,
    p50Ms: percentile(ms, 50),
    p99Ms: percentile(ms, 99),
  };
}
