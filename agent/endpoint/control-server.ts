// The endpoint's side of its control socket. One berthd at a time controls
// the endpoint; a new connection takes over from the old (the old berthd is
// exiting, the state-dir lock keeps two from running). Without any berthd the
// endpoint keeps serving what it has cached for `orphanSeconds`, long enough
// for a restart or an upgrade, then exits so a removed berthd leaves nothing.
import { unlink } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { Channel } from './channel.js';
import type { ChildMessage, ParentMessage } from './protocol.js';

export type ControlChannel = Channel<ParentMessage, ChildMessage>;

export interface ControlServerOptions {
  path: string;
  orphanSeconds: number;
  onController(channel: ControlChannel): void;
  onMessage(msg: ParentMessage): void;
  onOrphanTimeout(): void;
}

/** True when a live process answers on path: another endpoint already serves it. */
function answering(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

export class ControlServer {
  private server: Server | undefined;
  private controller: ControlChannel | undefined;
  private orphanTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: ControlServerOptions) {}

  get connected(): boolean {
    return this.controller?.open ?? false;
  }

  send(msg: ChildMessage): boolean {
    return this.controller?.send(msg) ?? false;
  }

  /** Resolves false when another live endpoint already owns the path. */
  async listen(): Promise<boolean> {
    if (await answering(this.opts.path)) return false;
    await unlink(this.opts.path).catch(() => undefined); // a dead endpoint's socket
    const server = createServer((socket) => this.adopt(new Channel(socket)));
    this.server = server;
    const umask = process.umask(0o077); // the socket is root's alone
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.opts.path, () => resolve());
      });
    } finally {
      process.umask(umask);
    }
    this.armOrphanTimer();
    return true;
  }

  private adopt(channel: ControlChannel): void {
    const previous = this.controller;
    this.controller = channel;
    previous?.close();
    if (this.orphanTimer) clearTimeout(this.orphanTimer);
    this.orphanTimer = undefined;
    channel.onMessage((msg) => {
      if (this.controller === channel) this.opts.onMessage(msg);
    });
    channel.onClose(() => {
      if (this.controller !== channel) return;
      this.controller = undefined;
      this.armOrphanTimer();
    });
    this.opts.onController(channel);
  }

  private armOrphanTimer(): void {
    if (this.opts.orphanSeconds <= 0 || this.orphanTimer) return;
    this.orphanTimer = setTimeout(() => this.opts.onOrphanTimeout(), this.opts.orphanSeconds * 1000);
    this.orphanTimer.unref();
  }

  async close(): Promise<void> {
    this.controller?.close();
    if (this.orphanTimer) clearTimeout(this.orphanTimer);
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await unlink(this.opts.path).catch(() => undefined);
  }
}
