// Rollback for multi-step host changes: each step registers its undo, and a
// failure runs them newest first. Success drops them.
export class Reverter {
  private readonly undo: { what: string; fn: () => Promise<unknown> | unknown }[] = [];

  add(what: string, fn: () => Promise<unknown> | unknown): void {
    this.undo.push({ what, fn });
  }

  success(): void {
    this.undo.length = 0;
  }

  /** Runs every undo even when some fail; returns the failures for the log. */
  async fail(): Promise<Error[]> {
    const errors: Error[] = [];
    for (const step of this.undo.reverse()) {
      try {
        await step.fn();
      } catch (err) {
        errors.push(
          new Error(`could not undo ${step.what}: ${err instanceof Error ? err.message : String(err)}`),
        );
      }
    }
    this.undo.length = 0;
    return errors;
  }
}
