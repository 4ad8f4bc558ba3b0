// SPDX-License-Identifier: MIT
// Test helper: turns a list of send/recv calls into the flow samples the kernel would emit (a sample
// at a call that comes at least `intervalMs` after the previous sample, the first call included,
// plus a final sample at the end), so pattern tests run on what proctap really sees.
import type { FlowSample, FlowSeries } from '../../src/analysis/series';

export interface Call {
  tMs: number;
  dir: 'tx' | 'rx';
  bytes: number;
}

export interface FlowOptions {
  pid?: number;
  proto?: 'tcp' | 'udp';
  socket?: string;
  remoteAddr?: string;
  remotePort?: number;
  startMs?: number;
  /** End of the flow (the final sample's time); null = still open, final sample at `traceEndMs`. */
  endMs?: number | null;
  traceEndMs?: number;
  intervalMs?: number;
}

export function simulateFlow(calls: Call[], o: FlowOptions = {}): FlowSeries {
  const interval = o.intervalMs ?? 100;
  const sorted = [...calls].sort((a, b) => a.tMs - b.tMs);
  const c = { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 };
  const samples: FlowSample[] = [];
  let last = -Infinity;
  for (const call of sorted) {
    if (call.dir === 'tx') {
      c.txBytes += call.bytes;
      c.txCalls++;
    } else {
      c.rxBytes += call.bytes;
      c.rxCalls++;
    }
    if (call.tMs - last >= interval) {
      samples.push({ tMs: call.tMs, ...c });
      last = call.tMs;
    }
  }
  const endMs = o.endMs === undefined ? (sorted.at(-1)?.tMs ?? 0) + 1 : o.endMs;
  samples.push({ tMs: endMs ?? o.traceEndMs ?? (sorted.at(-1)?.tMs ?? 0) + 1, ...c });
  return {
    pid: o.pid ?? 42,
    proto: o.proto ?? 'tcp',
    socket: o.socket ?? `s${Math.round(sorted[0]?.tMs ?? 0)}`,
    remoteAddr: o.remoteAddr ?? '127.0.0.1',
    remotePort: o.remotePort ?? 8080,
    startMs: o.startMs ?? Math.max(0, (sorted[0]?.tMs ?? 0) - 1),
    endMs,
    samples,
  };
}

/** Calls of a client that sends `req` bytes every `periodMs` (with `jitter(i)` ms added) and reads a
 *  `resp`-byte answer `rttMs` later. */
export function pollCalls(n: number, periodMs: number, req: number, resp: number, opts: { t0?: number; rttMs?: number; jitter?: (i: number) => number } = {}): Call[] {
  const out: Call[] = [];
  for (let i = 0; i < n; i++) {
    const t = (opts.t0 ?? 100) + i * periodMs + (opts.jitter?.(i) ?? 0);
    out.push({ tMs: t, dir: 'tx', bytes: req });
    if (resp > 0) out.push({ tMs: t + (opts.rttMs ?? 5), dir: 'rx', bytes: resp });
  }
  return out;
}

/** A steady transfer of `bytes` in one direction over [t0, t0+durationMs], one call per `stepMs`. */
export function bulkCalls(dir: 'tx' | 'rx', bytes: number, t0: number, durationMs: number, stepMs = 1): Call[] {
  const n = Math.max(1, Math.round(durationMs / stepMs));
  const out: Call[] = [];
  let sent = 0;
  for (let i = 0; i < n; i++) {
    const b = Math.round(((i + 1) * bytes) / n) - sent;
    sent += b;
    out.push({ tMs: t0 + ((i + 1) * durationMs) / n, dir, bytes: b });
  }
  return out;
}
