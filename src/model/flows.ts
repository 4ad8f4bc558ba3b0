// SPDX-License-Identifier: MIT
// Flow table: every (socket, process, remote) flow and its counters. Interval records carry cumulative
// counters (so a lost record costs resolution, never bytes); the kernel map read at release or at the
// end of the trace is final and exact.
import type { FlowCounters, FlowKey } from '../kernel/records';

export interface Flow {
  key: FlowKey;
  counters: FlowCounters;
  firstNs: number;
  lastNs: number;
  localAddr: string;
  localPort: number;
  /** Counters are final: read from the kernel after the socket was released or the trace ended. */
  final: boolean;
  /** Socket released (last file reference closed) at this time, if seen. */
  releasedNs: number | null;
  /** Cumulative counters at each interval record (at most one per flow interval). */
  samples: Array<{ tsNs: number; counters: FlowCounters }>;
  /** log2 message-size histograms (final counters only). */
  sizes: { tx: number[]; rx: number[] } | null;
}

function maxCounters(a: FlowCounters, b: FlowCounters): FlowCounters {
  return {
    txBytes: Math.max(a.txBytes, b.txBytes),
    rxBytes: Math.max(a.rxBytes, b.rxBytes),
    txCalls: Math.max(a.txCalls, b.txCalls),
    rxCalls: Math.max(a.rxCalls, b.rxCalls),
  };
}

export class FlowTable {
  private readonly flows = new Map<string, Flow>();
  private readonly byCookie = new Map<bigint, Set<string>>();

  get size(): number {
    return this.flows.size;
  }

  list(): Flow[] {
    return [...this.flows.values()];
  }

  get(id: string): Flow | undefined {
    return this.flows.get(id);
  }

  flowsOfSocket(cookie: bigint): Flow[] {
    const ids = this.byCookie.get(cookie);
    return ids ? [...ids].map((id) => this.flows.get(id)!) : [];
  }

  /** An interval or first-use record: counters only ever grow. */
  observe(key: FlowKey, counters: FlowCounters, firstNs: number, tsNs: number, localAddr: string, localPort: number): Flow {
    let flow = this.flows.get(key.id);
    if (!flow) {
      flow = { key, counters, firstNs, lastNs: tsNs, localAddr, localPort, final: false, releasedNs: null, samples: [], sizes: null };
      this.flows.set(key.id, flow);
      let ids = this.byCookie.get(key.cookie);
      if (!ids) this.byCookie.set(key.cookie, (ids = new Set()));
      ids.add(key.id);
      return flow;
    }
    if (!flow.final) flow.counters = maxCounters(flow.counters, counters);
    flow.lastNs = Math.max(flow.lastNs, tsNs);
    if (localPort && !flow.localPort) {
      flow.localAddr = localAddr;
      flow.localPort = localPort;
    }
    return flow;
  }

  /** An interval record: also a point of the flow's time series. */
  sample(key: FlowKey, counters: FlowCounters, firstNs: number, tsNs: number, localAddr: string, localPort: number): Flow {
    const flow = this.observe(key, counters, firstNs, tsNs, localAddr, localPort);
    if (!flow.final) flow.samples.push({ tsNs, counters });
    return flow;
  }

  /** Final counters read from the kernel map. */
  finalize(
    key: FlowKey,
    counters: FlowCounters,
    firstNs: number,
    lastNs: number,
    localAddr: string,
    localPort: number,
    sizes: { tx: number[]; rx: number[] } | null = null,
  ): Flow {
    const flow = this.observe(key, counters, firstNs, lastNs, localAddr, localPort);
    if (sizes) flow.sizes = sizes;
    flow.counters = counters;
    flow.firstNs = firstNs;
    flow.lastNs = Math.max(flow.lastNs, lastNs);
    flow.final = true;
    return flow;
  }

  markReleased(cookie: bigint, tsNs: number): Flow[] {
    const flows = this.flowsOfSocket(cookie);
    for (const flow of flows) if (flow.releasedNs === null) flow.releasedNs = tsNs;
    return flows;
  }
}
