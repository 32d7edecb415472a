// One message stream over a Unix socket between berthd and an endpoint:
// each frame is a 4-byte big-endian length and a v8-serialised value, so
// Buffers (DHCP datagrams) and Maps pass as they are, as over Node's IPC with
// serialization "advanced". A Unix socket instead of the IPC pipe is what lets
// an endpoint outlive the berthd that started it and be adopted by the next.
import type { Socket } from 'node:net';
import { deserialize, serialize } from 'node:v8';

/** Larger frames are a bug or an attack on the channel; the peer is dropped. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export class Channel<In, Out> {
  private buffered: Buffer = Buffer.alloc(0);
  private closed = false;
  private readonly messageListeners: ((msg: In) => void)[] = [];
  private readonly closeListeners: (() => void)[] = [];

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.closed = true;
      for (const listener of this.closeListeners.splice(0)) listener();
    });
  }

  onMessage(listener: (msg: In) => void): void {
    this.messageListeners.push(listener);
  }

  /** Runs listener once the socket is closed (at once, later, if it already is). */
  onClose(listener: () => void): void {
    if (this.closed) queueMicrotask(listener);
    else this.closeListeners.push(listener);
  }

  get open(): boolean {
    return !this.closed && !this.socket.destroyed;
  }

  /** False when the peer is gone; the message is dropped, never queued. */
  send(msg: Out): boolean {
    if (!this.open) return false;
    const body = serialize(msg);
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32BE(body.length, 0);
    this.socket.write(Buffer.concat([head, body]));
    return true;
  }

  close(): void {
    this.socket.end();
  }

  private receive(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 4) {
      const size = this.buffered.readUInt32BE(0);
      if (size > MAX_FRAME_BYTES) {
        this.socket.destroy();
        return;
      }
      if (this.buffered.length < 4 + size) return;
      const body = this.buffered.subarray(4, 4 + size);
      this.buffered = this.buffered.subarray(4 + size);
      let msg: In;
      try {
        msg = deserialize(body) as In;
      } catch {
        this.socket.destroy();
        return;
      }
      for (const listener of this.messageListeners) listener(msg);
    }
  }
}
