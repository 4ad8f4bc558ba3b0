// SPDX-License-Identifier: MIT
// The JSON report, schemaVersion 1 (documented in docs/schema.md). It is the source of every other
// rendering: the terminal tables are made from this object alone, so `proctap report FILE.json`
// re-renders exactly what `run` printed.

export const SCHEMA_VERSION = 1;

export type Backend = 'tracepoint' | 'fentry' | 'kprobe';
export type Proto = 'tcp' | 'udp';

export interface Traffic {
  txBytes: number;
  rxBytes: number;
  txCalls: number;
  rxCalls: number;
}

export interface Packets {
  txPackets: number;
  rxPackets: number;
  /** IP bytes (headers included) as the cgroup_skb hook saw them. */
  txBytes: number;
  rxBytes: number;
}

export interface ProcessReport {
  pid: number;
  ppid: number;
  comm: string;
  argv: string[];
  /** ms from the traced command's start; null when the process started before the trace (attach). */
  startOffsetMs: number | null;
  /** null while still running at the end of the trace. */
  exitOffsetMs: number | null;
  /** Exit code (0-255), or 128+N when killed by signal N; null when unknown or still running. */
  exitCode: number | null;
  /** Signal that killed the process, if any. */
  exitSignal: number | null;
  tcp: Traffic;
  udp: Traffic;
  packets: Packets;
}

export interface EndpointReport {
  proto: Proto;
  /** Remote address ("*" when the kernel did not say, e.g. recv() on an unconnected UDP socket). */
  remoteAddr: string;
  remotePort: number;
  txBytes: number;
  rxBytes: number;
  txCalls: number;
  rxCalls: number;
  /** Sockets that exchanged data with (or tried to connect to) this endpoint. */
  connections: number;
  pids: number[];
}

export type Outcome = 'open' | 'closed' | 'refused' | 'reset' | 'timeout' | 'failed' | 'aborted';

export interface ConnectionReport {
  pid: number;
  proto: Proto;
  /** "active" (connect), "passive" (accept), "udp" (datagram peer), "unknown" (opened before the trace). */
  role: 'active' | 'passive' | 'udp' | 'unknown';
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  startOffsetMs: number;
  durationMs: number | null;
  txBytes: number;
  rxBytes: number;
  txCalls: number;
  rxCalls: number;
  outcome: Outcome;
  /** errno name the connection ended with, e.g. "ECONNREFUSED". */
  error: string | null;
}

export interface LostCounters {
  /** Ring-buffer records dropped in kernel (buffer full), by kind. */
  records: number;
  recordsByKind: Record<string, number>;
  /** send/recv calls not counted because the kernel flow table was full, and their bytes. */
  flowTableFullCalls: number;
  flowTableFullBytes: number;
  /** Children not followed because the kernel traced-process table was full. */
  tracedTableFull: number;
  /** Proc connector overflows (ENOBUFS): process events the kernel could not deliver. */
  procConnectorOverflows: number;
}

export interface CaptureSummary {
  path: string;
  format: 'pcapng' | 'pcap';
  snaplen: number;
  filter: string | null;
  /** Packets written to the file. */
  packets: number;
  /** Packets the kernel could not hand over (ring buffer full): not in the file. */
  dropped: number;
  /** Packets the filter left out. */
  filteredOut: number;
  /** Written packets whose owning process could not be told (comment "owner unknown"). */
  unowned: number;
}

export interface Report {
  schemaVersion: typeof SCHEMA_VERSION;
  tool: { name: 'proctap'; version: string };
  mode: 'run' | 'attach';
  backend: Backend;
  command: string[];
  exitCode: number | null;
  startedAt: string;
  durationMs: number;
  lost: LostCounters;
  /** Packets the cgroup_skb hook saw in the traced cgroup whose socket owner it could not tell. */
  unattributedPackets: { tx: number; rx: number };
  totals: { tcp: Traffic; udp: Traffic; packets: Packets };
  processes: ProcessReport[];
  endpoints: EndpointReport[];
  connections: ConnectionReport[];
  /** Things the reader should know: what could not be seen, fallbacks taken. */
  notes: string[];
  /** Present when packets were captured (--pcap). */
  capture?: CaptureSummary;
}
