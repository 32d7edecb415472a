// tcpdump on a lab trunk bridge, for the VLAN tests to read what crossed it.
import { type ChildProcess, spawn } from 'node:child_process';
import { sleep } from './lab-host.js';

/** tcpdump on the trunk bridge: every 802.1Q frame, with link-level headers. */
export class TrunkCapture {
  private text = '';
  private readonly done: Promise<void>;
  private constructor(private readonly proc: ChildProcess) {
    proc.stdout?.setEncoding('utf8').on('data', (c: string) => {
      this.text += c;
    });
    this.done = new Promise((resolve) => proc.on('exit', () => resolve()));
  }

  static async start(bridge: string): Promise<TrunkCapture> {
    const proc = spawn('tcpdump', ['-e', '-n', '-l', '-i', bridge, 'vlan'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const cap = new TrunkCapture(proc);
    let err = '';
    proc.stderr?.setEncoding('utf8').on('data', (c: string) => {
      err += c;
    });
    const until = Date.now() + 20_000;
    while (!/listening on/.test(err)) {
      if (proc.exitCode !== null || Date.now() > until) {
        await cap.stop();
        throw new Error(`tcpdump on ${bridge} did not start: ${err}`);
      }
      await sleep(100);
    }
    return cap;
  }

  async stop(): Promise<string[]> {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
    await Promise.race([this.done, sleep(5000)]);
    return this.text.split('\n').filter(Boolean);
  }
}
