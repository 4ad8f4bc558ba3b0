// SPDX-License-Identifier: MIT
// The report's `lost` section from the kernel's own statistics and the proc connector's overflows. Pure.
import type { KernelStats } from '../kernel/maps';
import type { LostCounters } from '../schema/report';

export function lostCounters(stats: KernelStats, connectorOverflows: number): LostCounters {
  const records = Object.values(stats.lostRecords).reduce((a, b) => a + b, 0);
  return {
    records,
    recordsByKind: stats.lostRecords,
    flowTableFullCalls: stats.flowTableFull,
    flowTableFullBytes: stats.flowTableFullBytes,
    tracedTableFull: stats.tracedTableFull,
    procConnectorOverflows: connectorOverflows,
    ...(stats.retransmitTableFull > 0 ? { retransmitTableFull: stats.retransmitTableFull } : {}),
  };
}
