// SPDX-License-Identifier: MIT
// Ctrl-C, SIGTERM and SIGHUP end a trace; run and attach decide what ending means.
export const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Calls `onStop(signal)` on each stop signal until disposed (the default handlers, which would kill
 *  proctap before its report, are replaced meanwhile). */
export function onStopSignals(onStop: (signal: NodeJS.Signals) => void): () => void {
  const handler = (signal: NodeJS.Signals) => onStop(signal);
  for (const s of STOP_SIGNALS) process.on(s, handler);
  return () => {
    for (const s of STOP_SIGNALS) process.off(s, handler);
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
