// SPDX-License-Identifier: MIT
// L7 counters for the exporter: each decoded exchange counted once, as it is decoded, by protocol,
// method (HTTP method, Redis command, PostgreSQL mode, DNS question type) and status, with a latency
// histogram per protocol. Monotonic for the life of the process (exchanges are never uncounted), and
// bounded: past MAX_SERIES label sets a new one is counted as method="other", status="other". Pure.
import type { Exchange } from '../l7/types';
import type { L7Totals } from './source';

/** Label sets of proctap_l7_requests_total kept apart; more are one "other" series. */
export const MAX_L7_SERIES = 500;
/** Histogram bounds in seconds (le), as prom-client's defaults but down to 100 µs: loopback servers answer fast. */
export const L7_LATENCY_BOUNDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What the method label says for an exchange: a short word of what was asked, never a path or query. */
export function methodOf(x: Exchange): string {
  const d = x.detail;
  switch (d.kind) {
    case 'http':
      return d.method ?? '';
    case 'redis':
      return d.command ?? '';
    case 'postgres':
      return d.mode;
    case 'dns':
      return d.typeName ?? (d.type === null ? '' : String(d.type));
    case 'tls':
      return 'handshake';
  }
}

interface Histogram {
  counts: number[];
  count: number;
  sum: number;
}

export class L7MetricsCounter {
  private readonly requests = new Map<string, { protocol: string; method: string; status: string; count: number }>();
  private readonly latency = new Map<string, Histogram>();

  constructor(private readonly maxSeries = MAX_L7_SERIES) {}

  add(x: Exchange): void {
    const protocol = x.protocol;
    let method = methodOf(x);
    let status = x.status;
    let key = `${protocol}\0${method}\0${status}`;
    if (!this.requests.has(key) && this.requests.size >= this.maxSeries) {
      method = status = 'other';
      key = `${protocol}\0other\0other`;
    }
    const r = this.requests.get(key);
    if (r) r.count++;
    else this.requests.set(key, { protocol, method, status, count: 1 });
    // the whole answer: the request's first byte to the response's last (no response: no latency)
    const ns = x.latencyLastNs ?? x.latencyFirstNs;
    if (ns === null) return;
    const s = ns / 1e9;
    let h = this.latency.get(protocol);
    if (!h) this.latency.set(protocol, (h = { counts: L7_LATENCY_BOUNDS.map(() => 0), count: 0, sum: 0 }));
    for (let i = 0; i < L7_LATENCY_BOUNDS.length; i++) if (s <= L7_LATENCY_BOUNDS[i]) h.counts[i]++;
    h.count++;
    h.sum += s;
  }

  totals(): L7Totals {
    return {
      requests: [...this.requests.values()].map((r) => ({ ...r })),
      latency: [...this.latency].map(([protocol, h]) => ({ protocol, bounds: L7_LATENCY_BOUNDS, counts: [...h.counts], count: h.count, sum: h.sum })),
    };
  }
}
