// SPDX-License-Identifier: MIT
// Inputs of the time-series, distribution and pattern code: what the kernel's flow samples and size
// histograms become once decoded. The kernel emits a flow sample at most once per flow interval
// (100 ms by default), at the moment of a send/recv that comes at least that long after the flow's
// previous sample, plus a final sample when the flow ends (or the trace does).

import type { Traffic } from '../schema/report';

/** Cumulative counters of one flow at one moment (ms from the traced command's start). */
export interface FlowSample extends Traffic {
  tMs: number;
}

/** One flow = one (socket, process, remote endpoint). Samples are cumulative, in time order; the last one is final. */
export interface FlowSeries {
  pid: number;
  /** The process's kernel start time (ns) where known: pid + start time identify it. */
  startTimeNs?: number;
  proto: 'tcp' | 'udp';
  socket: string;
  remoteAddr: string;
  remotePort: number;
  startMs: number;
  endMs: number | null;
  samples: FlowSample[];
  /** A connection this side accepted (the server's side of it), and the local endpoint it was accepted on. */
  accepted?: boolean;
  localAddr?: string;
  localPort?: number;
}

/** log2 message-size histogram per process, protocol and direction, counted in kernel:
 *  buckets[i] = calls with size in [2^(i-1), 2^i) (bucket 0 = size 0). */
export interface SizeHistogram {
  pid: number;
  proto: 'tcp' | 'udp';
  direction: 'tx' | 'rx';
  buckets: number[];
}

/** Per-sample increase of a flow's counters, attributed to the sample's time. Increases are taken
 *  against the running maximum, so they are never negative and sum to the last sample's counters. */
export type FlowDelta = FlowSample;

export function flowDeltas(flow: FlowSeries): FlowDelta[] {
  const max = { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 };
  return flow.samples.map((s) => {
    const d: FlowDelta = { tMs: s.tMs, txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 };
    for (const k of ['txBytes', 'rxBytes', 'txCalls', 'rxCalls'] as const) {
      d[k] = Math.max(0, s[k] - max[k]);
      max[k] = Math.max(max[k], s[k]);
    }
    return d;
  });
}

/** "tcp/127.0.0.1/8080": a map key for a remote endpoint. */
export function endpointKey(e: { proto: string; remoteAddr: string; remotePort: number }): string {
  return `${e.proto}/${e.remoteAddr}/${e.remotePort}`;
}
