// SPDX-License-Identifier: MIT
// Lines for stderr that must be seen even with -q. Pure.
import type { LostCounters } from '../schema/report';

/** The warning when the ring buffer overflowed: what was lost, and that totals hold. */
export function lostRecordsWarning(lost: LostCounters): string | null {
  if (lost.records === 0) return null;
  const kinds = Object.entries(lost.recordsByKind)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  return `proctap: warning: ring buffer full: ${lost.records} records lost (${kinds}); byte and call totals are still exact (kernel counters); a larger --ring-buffer keeps them`;
}
