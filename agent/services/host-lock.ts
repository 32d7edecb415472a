// One change to the host at a time: instance and network creates and deletes,
// and the periodic reconcile, queue here. Without it a reconcile that read
// the desired state just before a create would sweep the new port as an orphan.
export class HostLock {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
