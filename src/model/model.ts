// SPDX-License-Identifier: MIT
// The trace model: decoded kernel records and proc connector events folded into the process tree, the
// flow table, the connection tracker and the names learned from DNS answers. No kernel access and no
// I/O: the trace session feeds it and asks it which sockets to read for the last time.
import type { TraceRecord } from '../kernel/records';
import type { ProcEvent } from '../kernel/proc-events';
import { ConnectionTracker } from './connections';
import { FlowTable } from './flows';
import { DnsNameTable } from './names';
import { ProcessTree } from './tree';

export class TraceModel {
  readonly tree = new ProcessTree();
  readonly flows = new FlowTable();
  readonly connections = new ConnectionTracker();
  readonly names = new DnsNameTable();
  /** TCP retransmits per socket cookie: the kernel's running total, so the largest reading wins. */
  readonly retransmits = new Map<bigint, number>();
  /** Sockets released since the last takeReleased(): their flows can be read for the last time. */
  private released: bigint[] = [];
  connectorOverflows = 0;

  onRecord(record: TraceRecord): void {
    switch (record.type) {
      case 'fork':
        this.tree.onFork(record.tgid, record.ppid, record.comm, record.tsNs, 'kernel', record.startTime);
        // Where the child lives in another PID namespace (a container), its own view of its pid.
        if (record.nspid && record.nspid !== record.tgid) {
          const node = this.tree.get(record.tgid, record.startTime);
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
      default:
        break;
    }
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

  /** Proc connector events: they fill in what kernel records missed (lost records) and never override
   *  them. Returns how many overflows (ENOBUFS: events lost) there were among them. */
  onProcEvents(events: ProcEvent[]): number {
    let overflows = 0;
    for (const e of events) {
      if (e.kind === 'overflow') {
        this.connectorOverflows++;
        overflows++;
      } else if (e.kind === 'fork' && e.pid === e.tgid && this.tree.has(e.parentTgid) && !this.tree.has(e.tgid)) {
        this.tree.onFork(e.tgid, e.parentTgid, '', e.tsNs, 'connector');
      } else if (e.kind === 'exit' && e.pid === e.tgid && this.tree.has(e.tgid)) {
        this.tree.onExit(e.tgid, e.tsNs, e.waitStatus, 'connector');
      }
    }
    return overflows;
  }
}
