// SPDX-License-Identifier: MIT
// What the Prometheus exporter reads, once per scrape: a snapshot of cumulative figures. Read-only;
// trace/metrics-source.ts implements it from the trace session (the one place that knows the model's shape).
//
// The contract the exporter relies on (and survives a breach of, without a series going down):
// - every figure is cumulative since the trace started and never decreases;
// - `totals` are exact: they include whatever the lists below leave out (folded connections,
//   processes the model no longer lists one by one);
// - a key names one thing for its life (a process instance, a remote endpoint); its bytes do not move
//   to another key.

export interface TrafficTotals {
  txBytes: number;
  rxBytes: number;
  txCalls: number;
  rxCalls: number;
}

export interface ProcessTotals {
  /** Stable for the process's life (pid and start time). */
  key: string;
  pid: number;
  comm: string;
  /** Container name (or short id), "" for none. */
  container: string;
  tcp: TrafficTotals;
  udp: TrafficTotals;
}

export interface RemoteTotals extends TrafficTotals {
  key: string;
  proto: 'tcp' | 'udp';
  remoteAddr: string;
  remotePort: number;
}

export type EndedOutcome = 'closed' | 'refused' | 'reset' | 'timeout' | 'failed' | 'aborted';

export interface ConnectionTotals {
  /** TCP connections seen (opened, accepted), by role. */
  opened: { active: number; passive: number };
  /** Connections that ended, by role and outcome. */
  ended: Array<{ role: 'active' | 'passive'; outcome: EndedOutcome; count: number }>;
}

/** Filled in by the L7 layer once it exists: requests by protocol and outcome, and their latency. */
export interface L7Totals {
  requests: Array<{ protocol: string; method?: string; status?: string; count: number }>;
  /** Cumulative histogram per protocol: counts[i] requests took at most bounds[i] seconds (le),
   *  `count` (= +Inf) and `sum` (seconds) over all of them. */
  latency: Array<{ protocol: string; bounds: number[]; counts: number[]; count: number; sum: number }>;
}

export interface MetricsSnapshot {
  totals: { tcp: TrafficTotals; udp: TrafficTotals };
  processes: ProcessTotals[];
  remotes: RemoteTotals[];
  connections: ConnectionTotals;
  retransmits: number;
  /** Ring-buffer records the kernel could not hand over, by kind. */
  lostRecords: Record<string, number>;
  /** Ring-buffer records handled. */
  records: number;
}

export interface MetricsSource {
  snapshot(): MetricsSnapshot;
  /** The L7 hook: absent until an L7 layer provides it. */
  l7?(): L7Totals;
}
