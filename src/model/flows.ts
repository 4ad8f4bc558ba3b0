// SPDX-License-Identifier: MIT
// Flow table: every (socket, process, remote) flow and its counters. Interval records carry cumulative
// counters (so a lost record costs resolution, never bytes); the kernel map read at release or at the
// end of the trace is final and exact.
import type { FlowCounters, FlowKey } from '../kernel/records';

export interface Flow {
  key: FlowKey;
  /** The owning process's id (model/tree.ts processId: "pid/startTime"), made once. */
  owner: string;
  counters: FlowCounters;
  firstNs: number;
  lastNs: number;
  localAddr: string;
  localPort: number;
  /** Counters are final: read from the kernel after the socket was released or the trace ended. */
  final: boolean;
  /** Socket released (last file reference closed) at this time, if seen. */
  releasedNs: number | null;
  /** Cumulative counters at interval records (at most one per flow interval; at most MAX_FLOW_SAMPLES,
   *  older ones thinned out: model/timeline.ts has every sample's bytes). */
  samples: Array<{ tsNs: number; counters: FlowCounters }>;
  /** The counters already added to the timeline. */
  accounted: FlowCounters;
  /** First sample (or final read) with received bytes: its time bounds the time to first byte. */
  firstRxNs: number | null;
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

/** Samples a flow keeps for pattern detection: the newest half stays whole, the older half is thinned. */
export const MAX_FLOW_SAMPLES = 256;

/** Every other sample of the older half dropped: the later sample's cumulative counters cover it. */
function thin(samples: Flow['samples']): void {
  const half = samples.length >> 1;
  const older = samples.slice(0, half).filter((_, i) => i === 0 || i % 2 === 1);
  samples.splice(0, half, ...older);
}

const processKey = (key: FlowKey) => `${key.tgid}/${key.startTime}`;

export class FlowTable {
  private readonly flows = new Map<string, Flow>();
  private readonly byCookie = new Map<bigint, Set<string>>();
  private readonly perProcess = new Map<string, number>();

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
      const accounted = { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 };
      const owner = processKey(key);
      flow = { key, owner, counters, firstNs, lastNs: tsNs, localAddr, localPort, final: false, releasedNs: null, samples: [], accounted, firstRxNs: null, sizes: null };
      this.flows.set(key.id, flow);
      this.perProcess.set(owner, (this.perProcess.get(owner) ?? 0) + 1);
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
    if (!flow.final) {
      if (flow.firstRxNs === null && counters.rxBytes > 0) flow.firstRxNs = tsNs;
      flow.samples.push({ tsNs, counters });
      if (flow.samples.length > MAX_FLOW_SAMPLES) thin(flow.samples);
    }
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
    if (flow.firstRxNs === null && counters.rxBytes > 0) flow.firstRxNs = flow.lastNs;
    flow.final = true;
    return flow;
  }

  /** Flows of a process (pid + start time) still in the table. */
  countOfProcess(tgid: number, startTime: bigint): number {
    return this.perProcess.get(`${tgid}/${startTime}`) ?? 0;
  }

  /** A socket's flows leave the table (they were retired: kept or folded by the model). */
  remove(cookie: bigint): Flow[] {
    const flows = this.flowsOfSocket(cookie);
    for (const f of flows) {
      this.flows.delete(f.key.id);
      const k = f.owner;
      const n = (this.perProcess.get(k) ?? 1) - 1;
      if (n > 0) this.perProcess.set(k, n);
      else this.perProcess.delete(k);
    }
    this.byCookie.delete(cookie);
    return flows;
  }

  markReleased(cookie: bigint, tsNs: number): Flow[] {
    const flows = this.flowsOfSocket(cookie);
    for (const flow of flows) if (flow.releasedNs === null) flow.releasedNs = tsNs;
    return flows;
  }
}
