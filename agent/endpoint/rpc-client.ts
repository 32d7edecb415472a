// Calls from the endpoint to berthd over IPC, matched by id, with a deadline.
import type { ChildMessage, RpcResponse } from './protocol.js';

export class RpcError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class RpcClient {
  private next = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();

  constructor(
    private readonly send: (msg: ChildMessage) => void,
    private readonly timeoutMs = 5000,
  ) {}

  call<T>(method: string, params: unknown): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new RpcError('BERTH_ERR_INTERNAL', `berthd did not answer ${method} within ${this.timeoutMs} ms`),
        );
      }, this.timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.send({ t: 'call', id, method, params });
    });
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
