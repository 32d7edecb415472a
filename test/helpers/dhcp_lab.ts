// Real DHCP clients against berthd, for the DHCP acceptance tests and the
// bench: busybox udhcpc and ISC dhclient in netns guests, each with a script
// that prints what the client got and configures the guest the way a cloud
// image's script does, but never touches the host's /etc/resolv.conf (ip netns
// exec shares /etc with the host).
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { removePrefixed, startBerthd, tempDir, uniquePrefix } from './berthd.js';
import { inNetns, Lab, PYTHON } from './hostnet_lab.js';

const DISCOVER = fileURLToPath(new URL('./dhcp_discover.py', import.meta.url));

export const NET_CONFIG = (name: string, third: number, extra = '') =>
  `{name: ${name}, subnet: 10.${third}.0.0/24, gateway: 10.${third}.0.1, dns: [10.${third}.0.1, 9.9.9.9], mtu: 1400, domain: dhcp.test${extra}}`;

/** berthd with networks from config, its own prefix, state dir and socket, torn down after the test. */
export async function startDhcpLab(
  t: Test,
  networks: string[],
  opts: { prefix?: string; stateDir?: string; socket?: string; extraConfig?: string } = {},
): Promise<Lab> {
  const prefix = opts.prefix ?? uniquePrefix();
  if (!opts.prefix) t.teardown(() => removePrefixed(prefix));
  const d = await startBerthd(t, {
    prefix,
    config: `${opts.extraConfig ?? ''}networks: [${networks.join(', ')}]\n`,
    ...(opts.stateDir ? { stateDir: opts.stateDir } : {}),
    ...(opts.socket ? { socket: opts.socket } : {}),
  });
  return new Lab(d);
}

// What an Alpine or OpenWrt udhcpc script does with option 121 (Debian's
// default.script ignores it and writes /etc/resolv.conf): routes from
// $staticroutes, else the default route from $router. It prints what udhcpc
// handed it, for tests; the storm benchmark runs it too, output discarded.
export const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
deconfig)
  ip link set "$interface" up
  ip -4 addr flush dev "$interface"
  ;;
bound|renew)
  echo "event=$1"
  for v in ip mask subnet router dns domain mtu hostname staticroutes lease serverid; do
    eval "echo $v=\\"\\$$v\\""
  done
  ip -4 addr replace "$ip/$mask" dev "$interface"
  [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
  if [ -n "$staticroutes" ]; then
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      if [ "$2" = 0.0.0.0 ]; then ip route replace "$1" dev "$interface" scope link
      else ip route replace "$1" via "$2" dev "$interface"; fi
      shift 2
    done
  elif [ -n "$router" ]; then
    ip route replace default via "\${router%% *}" dev "$interface"
  fi
  ;;
esac
exit 0
`;

export async function udhcpcScript(t: Test): Promise<string> {
  const dir = await tempDir(t, 'udhcpc');
  const file = join(dir, 'script.sh');
  await writeFile(file, UDHCPC_SCRIPT, { mode: 0o755 });
  return file;
}

/** KEY=VALUE lines of the last bound/renew event the script printed. */
export function lastEvent(stdout: string): Record<string, string> {
  const blocks = stdout.split(/^event=/m).slice(1);
  const last = blocks.at(-1);
  if (last === undefined) return {};
  const lines = `event=${last}`.split('\n');
  return Object.fromEntries(
    lines
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/** udhcpc once in the guest: exit code and what the script printed. */
export async function udhcpcOnce(
  lab: Lab,
  guest: string,
  script: string,
  extra: string[] = [],
): Promise<{ code: number | null; got: Record<string, string>; stdout: string; stderr: string }> {
  const r = await lab.exec(guest, udhcpcArgv(script, extra));
  return { code: r.code, got: lastEvent(r.stdout), stdout: r.stdout, stderr: r.stderr };
}

/** A long-running client (udhcpc -f, dhclient -d) in a netns, killed at teardown. */
export class Background {
  out = '';
  readonly proc: ChildProcess;

  constructor(t: Test, netns: string, argv: string[]) {
    this.proc = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout?.on('data', (c: Buffer) => {
      this.out += c.toString();
    });
    this.proc.stderr?.on('data', (c: Buffer) => {
      this.out += c.toString();
    });
    t.teardown(() => this.stop());
  }

  stop(): void {
    if (this.proc.exitCode === null && this.proc.pid) this.proc.kill('SIGKILL');
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  /** Waits until the output matches re (returns the match) or the time is up (undefined). */
  async waitFor(re: RegExp, ms: number, from = 0): Promise<RegExpMatchArray | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = this.out.slice(from).match(re);
      if (m) return m;
      if (Date.now() > deadline || this.proc.exitCode !== null) return undefined;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A dhclient script that prints the variables dhclient hands it into a file, and configures nothing. */
export async function dhclientScript(t: Test): Promise<{ script: string; out: string; dir: string }> {
  const dir = await tempDir(t, 'dhclient');
  const out = join(dir, 'events.txt');
  const script = join(dir, 'script.sh');
  await writeFile(
    script,
    `#!/bin/sh\n{ echo "reason=$reason"; env | grep '^new_' | sort; echo "end"; } >> ${out}\nexit 0\n`,
    { mode: 0o755 },
  );
  return { script, out, dir };
}

/** One DHCP attempt by busybox udhcpc on eth0: 3 tries 1 s apart, then give up; script reports. */
export function udhcpcArgv(script: string, extra: string[] = []): string[] {
  return ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '3', '-T', '1', '-s', script, ...extra];
}

/**
 * One DHCPDISCOVER crafted by scapy inside netns, with Ethernet source `src`
 * and BOOTP chaddr `chaddr`; the answers to it within 2 s (message types).
 */
export async function discoverFrom(
  netns: string,
  src: string,
  chaddr: string,
): Promise<{ answers: number; types: number[] }> {
  const r = await inNetns(netns, [PYTHON, DISCOVER, 'eth0', src, chaddr, '2']);
  if (r.code !== 0) throw new Error(`scapy failed: ${r.stdout}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
}
