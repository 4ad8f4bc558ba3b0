// SPDX-License-Identifier: MIT
// Hooks that only the tests use, all in one place (set with the hidden `--test-hook NAME=VALUE`, see
// docs/reliability.md): they make rare failures happen on demand.
export interface TestHooks {
  /** An internal error 300 ms after the trace started: the fatal-error handler must clean up. */
  injectFault?: 'uncaught-exception' | 'unhandled-rejection';
  /** The proc connector's receive queue in bytes (a small one overflows under a fork storm). */
  procConnectorBufferBytes?: number;
  /** The proc connector is not read for this many ms at the start (its queue overflows). */
  procConnectorPauseMs?: number;
  /** Finishing waits this many ms more (as a slow final read would): the progress line must show. */
  finishDelayMs?: number;
}

/** Arms the fault, if any; returns its disarm. */
export function armFault(hooks: TestHooks | undefined): () => void {
  const fault = hooks?.injectFault;
  if (!fault) return () => {};
  const timer = setTimeout(() => {
    if (fault === 'uncaught-exception') throw new Error('injected fault: uncaught exception');
    void Promise.reject(new Error('injected fault: unhandled rejection'));
  }, 300);
  return () => clearTimeout(timer);
}
