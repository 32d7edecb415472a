// One control connection from berthd to an endpoint: connect (waiting for a
// just-spawned endpoint to start listening), read its hello, answer its calls.
import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { BerthError } from '../../base/errors.js';
import { Channel } from './channel.js';
import type { ChildMessage, Hello, Notice, ParentMessage, RpcRequest } from './protocol.js';

const SPAWN_DEADLINE_MS = 15_000;
const HELLO_DEADLINE_MS = 3_000;
const EXIT_DEADLINE_MS = 3_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class EndpointLink {
  private readonly early: ChildMessage[] = [];
  private listener: ((msg: ChildMessage) => void) | undefined;
  private helloWaiter: ((hello: Hello) => void) | undefined;

  constructor(private readonly channel: Channel<ChildMessage, ParentMessage>) {
    channel.onMessage((msg) => {
      if (msg.t === 'hello' && this.helloWaiter) this.helloWaiter(msg);
      else if (this.listener) this.listener(msg);
      else this.early.push(msg);
    });
  }

  /** The endpoint's hello, sent first on every connection; undefined if it never comes. */
  hello(): Promise<Hello | undefined> {
    const got = this.early.findIndex((m) => m.t === 'hello');
    if (got >= 0) return Promise.resolve(this.early.splice(got, 1)[0] as Hello);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.channel.socket.destroy();
        resolve(undefined);
      }, HELLO_DEADLINE_MS);
      this.helloWaiter = (h) => {
        clearTimeout(timer);
        this.helloWaiter = undefined;
        resolve(h);
      };
      this.channel.onClose(() => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
  }

  onMessage(listener: (msg: ChildMessage) => void): void {
    this.listener = listener;
    for (const msg of this.early.splice(0)) listener(msg);
  }

  onClose(listener: () => void): void {
    this.channel.onClose(listener);
  }

  send(msg: Notice): boolean {
    return this.channel.send(msg);
  }

  answer(call: RpcRequest, result: Promise<unknown>): void {
    result.then(
      (value) => this.channel.send({ t: 'result', id: call.id, ok: true, value }),
      (err: unknown) => {
        const e =
          err instanceof BerthError
            ? err
            : new BerthError('BERTH_ERR_INTERNAL', String((err as Error)?.message ?? err));
        this.channel.send({
          t: 'result',
          id: call.id,
          ok: false,
          error: { code: e.code, message: e.message },
        });
      },
    );
  }

  /** Tells the endpoint to exit and waits until it has closed its socket. */
  async exitAndWait(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.onClose(resolve));
    this.channel.send({ t: 'exit' });
    await Promise.race([closed, sleep(EXIT_DEADLINE_MS)]);
  }

  close(): void {
    this.channel.close();
  }
}

function tryConnect(path: string): Promise<EndpointLink | undefined> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => resolve(new EndpointLink(new Channel(socket))));
    socket.once('error', () => resolve(undefined));
  });
}

/**
 * Connects to the endpoint on path. With `spawned`, keeps trying until the
 * new endpoint listens, it exits, or a deadline passes; without, one try.
 */
export async function connectEndpoint(
  path: string,
  spawned?: ChildProcess,
  deadlineMs = SPAWN_DEADLINE_MS,
): Promise<EndpointLink | undefined> {
  if (!spawned) return tryConnect(path);
  let exited = false;
  spawned.once('exit', () => {
    exited = true;
  });
  const deadline = Date.now() + deadlineMs;
  for (let wait = 20; Date.now() < deadline && !exited; wait = Math.min(wait * 2, 200)) {
    const link = await tryConnect(path);
    if (link) return link;
    await sleep(wait);
  }
  return undefined;
}
