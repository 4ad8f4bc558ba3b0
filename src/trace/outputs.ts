// SPDX-License-Identifier: MIT
// What happens when an output fails during a trace (disk full, a closed pipe): the first error is kept
// and reported once, the failed output stops, the trace goes on to its report, and the lifecycle owner
// is told so it can stop the trace as on Ctrl-C.
export class OutputFailures {
  /** The first write error of an output (capture file, event stream). */
  error: Error | null = null;
  /** Called once, at the first error: run/attach stop the trace. Replaced when the trace is over. */
  onFailure: (err: Error) => void = () => {};

  fail(err: unknown): void {
    if (this.error) return;
    this.error = err instanceof Error ? err : new Error(String(err));
    this.onFailure(this.error);
  }

  /** A runner for one output's writes that stops at its first failure (an event stream keeps its
   *  complete lines). */
  guard(): (write: () => void) => void {
    let failed = false;
    return (write) => {
      if (failed) return;
      try {
        write();
      } catch (err) {
        failed = true;
        this.fail(err);
      }
    };
  }
}
