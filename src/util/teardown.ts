// SPDX-License-Identifier: MIT
// Last-resort teardown. Normal paths clean up in their own `finally` blocks; an uncaught exception or an
// unhandled rejection never reaches those, so what must not outlive proctap (the traced tree, a network
// namespace, a NAT table, the forwarding setting) also registers a synchronous undo here, run by the
// fatal-error handler before the process exits. BPF links and programs go with the process's fds; the
// reaper removes the cgroup once it is empty.

const steps = new Set<() => void>();

/** Registers a synchronous undo; the returned function unregisters it (call it once cleaned up normally). */
export function onFatal(step: () => void): () => void {
  steps.add(step);
  return () => steps.delete(step);
}

/** Runs every registered undo, newest first; one failing does not stop the others. Returns the errors. */
export function runFatalTeardown(): Error[] {
  const errors: Error[] = [];
  for (const step of [...steps].reverse()) {
    steps.delete(step);
    try {
      step();
    } catch (err) {
      errors.push(err instanceof Error ? err : new Error(String(err)));
    }
  }
  return errors;
}

/** Exit code after an internal error, as for any failure of proctap itself. */
export const EXIT_INTERNAL_ERROR = 125;

/** Installs the handlers: one line on stderr, the teardown, exit 125. */
export function installFatalHandlers(write: (line: string) => void = (l) => process.stderr.write(l)): void {
  const fatal = (kind: string) => (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    write(`proctap: internal error (${kind}): ${message.split('\n')[0]}; cleaning up\n`);
    for (const e of runFatalTeardown()) write(`proctap: cleanup: ${e.message.split('\n')[0]}\n`);
    process.exit(EXIT_INTERNAL_ERROR);
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled rejection'));
}
