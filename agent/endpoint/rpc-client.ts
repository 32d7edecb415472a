// Calls from the endpoint to berthd, matched by id, with a deadline. While no
// berthd is connected (it is restarting) a call waits for the next one instead
// of failing at once, so a request during a restart is late, not lost.
import type { ChildMessage, RpcRequest, RpcResponse } from './protocol.js';

export class RpcError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Pending {
  request: RpcRequest;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class RpcClient {
  private next = 1;
  private readonly pending = new Map<number, Pending>();

  /** send returns false when no berthd is connected. */
  constructor(
    private readonly send: (msg: ChildMessage) => boolean,
    private readonly timeoutMs = 5000,
  ) {}

  call<T>(method: string, params: unknown): Promise<T> {
    const id = this.next++;
    const request: RpcRequest = { t: 'call', id, method, params };
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new RpcError('BERTH_ERR_INTERNAL', `berthd did not answer ${method} within ${this.timeoutMs} ms`),
        );
      }, this.timeoutMs);
      this.pending.set(id, { request, resolve: resolve as (v: unknown) => void, reject, timer });
      this.send(request);
    });
  }

  /**
   * A berthd connected: every unanswered call is sent to it, including those
   * the berthd that went away had received, since it can no longer answer.
   */
  resend(): void {
    for (const p of this.pending.values()) this.send(p.request);
  }

  settle(msg: RpcResponse): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.ok) p.resolve(msg.value);
    else
      p.reject(new RpcError(msg.error?.code ?? 'BERTH_ERR_INTERNAL', msg.error?.message ?? 'unknown error'));
  }
}
