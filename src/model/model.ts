// SPDX-License-Identifier: MIT
// Folds decoded records (ring buffer) and proc connector events into the process tree, the flow table
// and the connection tracker. No kernel access: the session feeds it and asks it what to finalize.
import { ConnectionTracker } from './connections';
import { FlowTable } from './flows';
import { DnsNameTable } from './names';
import { ProcessTree } from './tree';
import { forEachRecord, type TraceRecord } from '../kernel/records';

export const PROC_KIND = { fork: 1, exec: 2, exit: 3, overflow: 4 } as const;
export const PROC_RECORD_SIZE = 40;

export class TraceCollector {
  readonly tree = new ProcessTree();
  readonly flows = new FlowTable();
  readonly connections = new ConnectionTracker();
  readonly names = new DnsNameTable();
  /** TCP retransmits per socket cookie: the kernel's running total, so the largest reading wins. */
  readonly retransmits = new Map<bigint, number>();
  /** Sockets released since the last takeReleased(): their flows can be read for the last time. */
  private released: bigint[] = [];
  records = 0;
  connectorOverflows = 0;
  /** Optional tap for the NDJSON event stream and the detail mode. */
  onRecordTap: ((record: TraceRecord) => void) | null = null;

  onBatch(batch: ArrayBuffer): void {
    this.records += forEachRecord(batch, (record) => this.onRecord(record));
  }

  onRecord(record: TraceRecord): void {
    switch (record.type) {
      case 'fork':
        this.tree.onFork(record.tgid, record.ppid, record.comm, record.tsNs, 'kernel', record.startTimeNs);
        // Where the child lives in another PID namespace (a container), its own view of its pid.
        if (record.nspid && record.nspid !== record.tgid) {
          const node = this.tree.get(record.tgid, record.startTimeNs);
          if (node) node.nspid = record.nspid;
        }
        break;
      case 'exec':
        if (record.matched && !this.tree.has(record.tgid)) {
          this.tree.addRoot(record.tgid, record.ppid, record.comm, record.argv, record.tsNs, record.startTime || null);
        }
        this.tree.onExec(record.tgid, record.comm, record.argv, record.startTime);
        break;
      case 'exit':
        this.tree.onExit(record.tgid, record.tsNs, record.waitStatus, 'kernel', record.startTime);
        break;
      case 'flow':
        this.flows.sample(record.key, record.counters, record.firstNs, record.tsNs, record.localAddr, record.localPort);
        this.tree.ensure(record.tgid, record.key.startTime);
        break;
      case 'sockState':
        this.connections.onState(record);
        break;
      case 'sockRelease':
        this.flows.markReleased(record.cookie, record.tsNs);
        this.released.push(record.cookie);
        break;
      case 'dns':
        this.names.onResponse(record.data, record.tgid, record.tsNs);
        break;
      case 'call':
        break;
    }
    this.onRecordTap?.(record);
  }

  /** A socket may be read twice (at release, then again at the end if it retransmitted after close()). */
  onRetransmits(cookie: bigint, total: number): void {
    if (total > (this.retransmits.get(cookie) ?? 0)) this.retransmits.set(cookie, total);
  }

  takeReleased(): bigint[] {
    const released = this.released;
    this.released = [];
    return released;
  }

  /** Proc connector batch: fills in what kernel records missed (lost records); never overrides them.
   *  Returns how many overflows (ENOBUFS: events lost) the batch reported. */
  onProcBatch(batch: ArrayBuffer): number {
    let overflows = 0;
    const view = new DataView(batch);
    for (let at = 0; at + PROC_RECORD_SIZE <= batch.byteLength; at += PROC_RECORD_SIZE) {
      const kind = view.getUint32(at, true);
      const pid = view.getUint32(at + 4, true);
      const tgid = view.getUint32(at + 8, true);
      const parentTgid = view.getUint32(at + 16, true);
      const exitCode = view.getUint32(at + 20, true);
      const tsNs = Number(view.getBigUint64(at + 32, true));
      if (kind === PROC_KIND.overflow) {
        this.connectorOverflows++;
        overflows++;
      } else if (kind === PROC_KIND.fork && pid === tgid && this.tree.has(parentTgid) && !this.tree.has(tgid)) {
        this.tree.onFork(tgid, parentTgid, '', tsNs, 'connector');
      } else if (kind === PROC_KIND.exit && pid === tgid && this.tree.has(tgid)) {
        this.tree.onExit(tgid, tsNs, exitCode, 'connector');
      }
    }
    return overflows;
  }
}
