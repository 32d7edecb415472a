// Lab hosts: QEMU VMs (TCG) running Debian's kernel, whose 802.1Q and
// VLAN-filtering bridge modules this machine's kernel lacks, joined by a
// plain bridge on this host as their trunk. Each boots the image from
// images/lab-host/build.sh plus the project (dist/, production node_modules)
// and is driven over a command channel on its second serial port.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { osCommandRunner } from '../../base/command.js';

export const ROOT = new URL('../../', import.meta.url).pathname;
const run = (argv: string[], timeoutMs = 60_000) => osCommandRunner.run(argv, { timeoutMs });

export interface LabHostImage {
  dir: string;
  kernel: string;
  baseCpio: string;
  cmdline: string;
}

/** Builds (or finds cached) the lab host's kernel and base cpio; the first build downloads the kernel .deb. */
export async function ensureLabHostImage(): Promise<LabHostImage> {
  const { stdout } = await run(['bash', join(ROOT, 'images/lab-host/build.sh')], 900_000);
  const dir = stdout.trim().split('\n').pop() as string;
  const cmdline = (await readFile(join(dir, 'cmdline'), 'utf8')).trim();
  return { dir, kernel: join(dir, 'vmlinux'), baseCpio: join(dir, 'base.cpio'), cmdline };
}

/** base.cpio followed by this working tree's project cpio, in workDir. */
export async function buildInitrd(image: LabHostImage, workDir: string): Promise<string> {
  const app = join(workDir, 'app.cpio');
  await run(['bash', join(ROOT, 'images/lab-host/app-cpio.sh'), app, ROOT], 300_000);
  const initrd = join(workDir, 'initrd.cpio');
  await run(['sh', '-c', 'cat "$1" "$2" >"$3" && rm -f "$2"', 'sh', image.baseCpio, app, initrd]);
  return initrd;
}

export async function makeWorkDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'lh-'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A plain bridge (this kernel cannot filter VLANs, which is the point: tags pass through) and taps. */
export class Trunk {
  private constructor(
    readonly bridge: string,
    readonly taps: string[],
  ) {}

  static async create(bridge: string, taps: string[]): Promise<Trunk> {
    const trunk = new Trunk(bridge, taps);
    await trunk.remove(); // leftovers of a run that was killed
    await run(['ip', 'link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    await run(['sysctl', '-qw', `net.ipv6.conf.${bridge}.disable_ipv6=1`]);
    await run(['ip', 'link', 'set', bridge, 'up']);
    for (const tap of taps) {
      await run(['ip', 'tuntap', 'add', tap, 'mode', 'tap']);
      await run(['sysctl', '-qw', `net.ipv6.conf.${tap}.disable_ipv6=1`]);
      await run(['ip', 'link', 'set', tap, 'master', bridge, 'up']);
    }
    return trunk;
  }

  /** Removes the taps and the bridge; absent ones are fine. */
  async remove(): Promise<void> {
    for (const link of [...this.taps, this.bridge])
      await run(['ip', 'link', 'del', link]).catch(() => undefined);
  }
}

export interface ShResult {
  code: number;
  out: string;
}

export interface BootOptions {
  name: string;
  image: LabHostImage;
  initrd: string;
  tap: string;
  mac: string;
  workDir: string;
  memoryMiB?: number;
}

/** One lab host VM. */
export class LabHost {
  private buffer = '';
  private waiters: { id: string; resolve: (r: ShResult) => void }[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private socket: Socket | undefined;
  private exited = false;
  readonly console: string;

  private constructor(
    readonly name: string,
    private readonly proc: ChildProcess,
    private readonly ctlPath: string,
    consoleLog: string,
  ) {
    this.console = consoleLog;
    proc.on('exit', () => {
      this.exited = true;
    });
  }

  /** Starts QEMU; `ready()` waits for the guest's init. */
  static boot(o: BootOptions): LabHost {
    const consoleLog = join(o.workDir, `${o.name}.console.log`);
    const ctl = join(o.workDir, `${o.name}.ctl.sock`);
    const argv = [
      '-accel',
      'tcg,tb-size=256',
      '-m',
      String(o.memoryMiB ?? 1024),
      '-smp',
      '1',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-no-reboot',
      '-kernel',
      o.image.kernel,
      '-initrd',
      o.initrd,
      '-append',
      `${o.image.cmdline} labhost.name=${o.name}`,
      '-serial',
      `file:${consoleLog}`,
      '-chardev',
      `socket,id=ctl,path=${ctl},server=on,wait=off`,
      '-serial',
      'chardev:ctl',
      '-netdev',
      `tap,id=n0,ifname=${o.tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=n0,mac=${o.mac}`,
    ];
    const proc = spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    const err = createWriteStream(join(o.workDir, `${o.name}.qemu.log`));
    proc.stderr?.pipe(err);
    return new LabHost(o.name, proc, ctl, consoleLog);
  }

  async consoleText(): Promise<string> {
    return readFile(this.console, 'utf8').catch(() => '');
  }

  /** The console's last lines, for failure messages. */
  async consoleTail(lines = 40): Promise<string> {
    return (await this.consoleText()).split('\n').slice(-lines).join('\n');
  }

  /** Waits for init's "ready" line, then for the channel to answer. */
  async ready(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!/LAB-HOST ready/.test(await this.consoleText())) {
      if (this.exited) throw new Error(`lab host ${this.name}: QEMU exited during boot`);
      if (Date.now() > until) throw new Error(`lab host ${this.name}: not ready after ${timeoutMs} ms`);
      await sleep(200);
    }
    this.socket = await connectWithRetry(this.ctlPath, until);
    this.socket.setEncoding('utf8');
    this.socket.on('data', (chunk: string) => this.onData(chunk));
    const r = await this.sh('echo ok', Math.max(5_000, until - Date.now()));
    if (r.out.trim() !== 'ok')
      throw new Error(`lab host ${this.name}: channel answered ${JSON.stringify(r)}`);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      const end = this.buffer.match(/@@END (\S+) (\d+)\n/);
      if (!end || end.index === undefined) return;
      const id = end[1] as string;
      const begin = this.buffer.lastIndexOf(`@@BEGIN ${id}\n`, end.index);
      const out = begin >= 0 ? this.buffer.slice(begin + `@@BEGIN ${id}\n`.length, end.index) : '';
      this.buffer = this.buffer.slice(end.index + end[0].length);
      const i = this.waiters.findIndex((w) => w.id === id);
      if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve({ code: Number(end[2]), out });
    }
  }

  /** Runs a shell script in the VM (one at a time, in order); rejects on timeout with the console tail. */
  sh(script: string, timeoutMs = 60_000): Promise<ShResult> {
    const next = this.queue.then(() => this.send(script, timeoutMs));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private send(script: string, timeoutMs: number): Promise<ShResult> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new Error(`lab host ${this.name}: not ready`));
    const id = randomBytes(6).toString('hex');
    return new Promise<ShResult>((resolve, reject) => {
      const timer = setTimeout(async () => {
        this.waiters = this.waiters.filter((w) => w.id !== id);
        reject(
          new Error(
            `lab host ${this.name}: no answer after ${timeoutMs} ms to:\n${script}\n--- console tail ---\n${await this.consoleTail()}`,
          ),
        );
      }, timeoutMs);
      this.waiters.push({
        id,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
      socket.write(`${id} ${Buffer.from(script).toString('base64')}\n`);
    });
  }

  /** sh, but a non-zero exit code rejects with the output and the console tail. */
  async must(script: string, timeoutMs = 60_000): Promise<string> {
    const r = await this.sh(script, timeoutMs);
    if (r.code !== 0)
      throw new Error(
        `lab host ${this.name}: exit code ${r.code} from:\n${script}\n--- output ---\n${r.out}\n--- console tail ---\n${await this.consoleTail(20)}`,
      );
    return r.out;
  }

  /** Kills QEMU and waits for it to go. */
  async stop(): Promise<void> {
    this.socket?.destroy();
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.kill('SIGKILL');
    await Promise.race([gone, sleep(10_000)]);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function connectWithRetry(path: string, until: number): Promise<Socket> {
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect(path);
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
    } catch (err) {
      if (Date.now() > until) throw err;
      await sleep(200);
    }
  }
}
