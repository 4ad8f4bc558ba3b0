// SPDX-License-Identifier: MIT
// The JSON report, schemaVersion 1 (documented in docs/schema.md). It is the source of every other
// rendering: the terminal tables are made from this object alone, so `proctap report FILE.json`
// re-renders exactly what `run` printed.
import type { L7Report } from './l7';

export type * from './l7';

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
  /** Kernel task start time (CLOCK_MONOTONIC ns) where known: with pid, the process's identity across PID
   *  reuse (two entries with one pid are two processes). Not a clock reading to compare with wall time. */
  startTimeNs?: number;
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
  /** PID inside the process's own PID namespace, where it differs from `pid` (containers). */
  nspid?: number;
  /** Network namespace inode, where it differs from proctap's own. */
  netns?: number;
  /** The container the process runs in (from its cgroup path), where it runs in one. */
  container?: ContainerReport;
  tcp: Traffic;
  udp: Traffic;
  packets: Packets;
}

export interface ContainerReport {
  /** "cri": a Kubernetes container whose runtime neither the path nor the runtimes' files told. */
  runtime: 'docker' | 'containerd' | 'cri-o' | 'podman' | 'systemd-nspawn' | 'lxc' | 'cri';
  /** 64 hex digits, or the machine name (systemd-nspawn, lxc). */
  id: string;
  /** The name the runtime keeps for it, where proctap could read it. */
  name?: string;
  /** Kubernetes: the pod's UID (from the cgroup path), name and namespace (from the runtime's files). */
  podUid?: string;
  podName?: string;
  podNamespace?: string;
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
  /** Processes, ascending (at most 64: `morePids` says there were more). */
  pids: number[];
  morePids?: boolean;
  /** "inbound": clients from remoteAddr connected to our `localPort` (their ports, ephemeral, are not
   *  told apart: remotePort is 0). Absent: we connected or sent to remoteAddr:remotePort. */
  direction?: 'inbound';
  localPort?: number;
  /** Host name the traced processes learned for remoteAddr from a DNS answer they received (optional). */
  remoteName?: string;
}

export type Outcome = 'open' | 'closed' | 'refused' | 'reset' | 'timeout' | 'failed' | 'aborted';

export interface ConnectionReport {
  pid: number;
  /** The process's startTimeNs (see ProcessReport), where known. */
  startTimeNs?: number;
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
  /** attach: the socket was open before the trace began; its bytes count from the attach on. */
  preexisting?: boolean;
  /** run --isolate: the source address and port this connection had on the host's NAT device (conntrack). */
  nat?: { addr: string; port: number };
  /** Host name learned for remoteAddr from a DNS answer (the one valid when the connection started). */
  remoteName?: string;
  /** TCP: segments the kernel retransmitted on this socket (tcp:tcp_retransmit_skb, SYNs included). */
  retransmits?: number;
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
  /** Retransmits not counted because the kernel retransmit table was full (optional). */
  retransmitTableFull?: number;
}

export type Target =
  | { kind: 'pid'; pid: number; comm: string; argv: string[] }
  | { kind: 'comm'; comm: string }
  | { kind: 'cgroup'; path: string }
  | { kind: 'container'; query: string; container: ContainerReport; cgroup: string };

/** attach: a process that ran at the attach and was traced from then on, and why it was taken. */
export interface AttachedProcess {
  pid: number;
  ppid: number;
  comm: string;
  /** "pid": listed; "comm" / "cgroup" / "container": matched --comm / --cgroup / --container;
   *  "descendant": below one of those. */
  via: 'pid' | 'comm' | 'cgroup' | 'container' | 'descendant';
}

export interface CaptureSummary {
  /** "ebpf": the cgroup_skb hook, packets of the traced sockets with their owner (default when absent);
   *  "libpcap": every packet on the interfaces below (run --isolate, attach --netns-capture). */
  source?: 'ebpf' | 'libpcap';
  /** libpcap: the interfaces captured, e.g. "pt123n (netns proctap-123)". */
  interfaces?: string[];
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
  /** -C / -G / -W: the files written, in the order they were last written to (`path` is the pattern). */
  files?: string[];
}

export interface IsolationReport {
  /** ip netns name (deleted at the end of the run). */
  netns: string;
  hostInterface: string;
  namespaceInterface: string;
  /** The namespace's /30: the host end is its gateway. */
  subnet: string;
  gateway: string;
  address: string;
  /** Unique-local /64, when the host has an IPv6 default route. */
  ipv6?: { subnet: string; gateway: string; address: string };
  /** Device the traffic is masqueraded out of; null when the host has no default route. */
  device: string | null;
  nat: 'nftables' | 'iptables' | 'none';
  /** net.ipv4.ip_forward before the run, and whether proctap turned it on (restored after). */
  ipForward: { before: string; changed: boolean };
  /** "public": --use-public-dns (resolv.conf of the namespace only). */
  dns: 'host' | 'public';
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
  /** attach: what was asked for. */
  targets?: Target[];
  /** attach: the processes taken at the attach (targets, then their subtrees), parents first. */
  attached?: AttachedProcess[];
  /** run --isolate: the namespace the command ran in and how it reached the network. */
  isolation?: IsolationReport;
  /** What was folded into aggregates instead of being listed one by one (optional: absent in reports
   *  of older versions, which listed everything). */
  folding?: Folding;
  /** Connection rows not in `connections`, per service endpoint (optional). */
  foldedConnections?: FoldedConnections[];
  /** Exited processes not in `processes`, per parent and command (optional). */
  foldedProcesses?: FoldedProcesses[];
  /** Payload bytes over time (optional). */
  timeSeries?: TimeSeries;
  /** Message sizes, connection durations, time to first byte, activity (optional). */
  distributions?: Distributions;
  /** Traffic patterns detected (optional; [] = looked for, none found). */
  patterns?: Pattern[];
  /** DNS answers the traced processes received (optional; absent when none was seen). */
  dns?: DnsReport;
  /** --l7: what the traced processes said (requests, commands, queries), per process and endpoint. */
  l7?: L7Report;
}

/** The retention policy (model/retention.ts): closed connections and exited processes are listed one by
 *  one when they are among the newest, the largest or the failed ones of their kind, each up to its cap;
 *  the rest are folded. */
export interface Folding {
  keep: {
    connections: { newest: number; largest: number; failed: number };
    processes: { newest: number; largest: number; failed: number };
  };
  /** Connection rows folded (in `foldedConnections`) and the sockets they belonged to. */
  connections: number;
  sockets: number;
  /** Exited processes folded (in `foldedProcesses`). */
  processes: number;
}

/** Folded connection rows of one service endpoint. */
export interface FoldedConnections extends Traffic {
  proto: Proto;
  remoteAddr: string;
  /** As in EndpointReport: 0 with direction "inbound". */
  remotePort: number;
  direction?: 'inbound';
  localPort?: number;
  connections: number;
  /** How many ended each way. */
  outcomes: Partial<Record<Outcome, number>>;
  /** TCP rows' retransmits, summed; absent when not counted. */
  retransmits?: number;
  /** Durations of the rows that ended. */
  durations: DurationStats;
  pids: number[];
  morePids?: boolean;
  firstStartOffsetMs: number;
  lastEndOffsetMs: number | null;
}

/** Folded processes of one parent and command. */
export interface FoldedProcesses {
  ppid: number;
  parentStartTimeNs?: number;
  comm: string;
  count: number;
  tcp: Traffic;
  udp: Traffic;
  packets: Packets;
  /** Exit codes (shell convention; "unknown") and how many processes had each. */
  exits: Record<string, number>;
  firstStartOffsetMs: number | null;
  lastExitOffsetMs: number | null;
}

/** Names learned from DNS responses (UDP from port 53) the traced processes received; no lookups of our own. */
export interface DnsReport {
  /** DNS responses received by traced sockets. */
  responses: number;
  /** Responses that could not be parsed (not counted in `responses`). */
  malformed: number;
  /** Responses longer than the kernel copies (1024 bytes of IP packet): their later answers are missing. */
  cut: number;
  /** One entry per name asked for, in the order first learned. */
  names: Array<{
    name: string;
    /** CNAMEs followed from `name` to the addresses, in order. */
    cnames: string[];
    addresses: string[];
    /** Processes that received an answer for it. */
    pids: number[];
    /** "address:port" of the servers that answered. */
    servers: string[];
    /** ms from the command's start of the first answer. */
    firstOffsetMs: number;
    /** Smallest TTL (s) seen. */
    ttl: number;
  }>;
}

// ---------------------------------------------------------------- optional, additive sections
// Traffic over time, statistics and detected patterns (docs/schema.md, docs/patterns.md). A report
// may lack them (older writers, or a trace that was not sampled); readers must treat them as optional.

/** Payload bytes per time bucket: bucket i covers [startMs + i·intervalMs, startMs + (i+1)·intervalMs). */
export interface TimeSeries {
  intervalMs: number;
  /** Always 0: the traced command's start. */
  startMs: 0;
  /** Bytes sent in each bucket (not a rate: divide by intervalMs/1000 for bytes/s). */
  tx: number[];
  rx: number[];
  /** The same per process (pid + startTimeNs where known), ascending pid then start. */
  perProcess: Array<{ pid: number; startTimeNs?: number; tx: number[]; rx: number[] }>;
}

/** log2 message-size histogram of send or receive calls. */
export interface SizeStats {
  /** Calls counted. */
  calls: number;
  /** buckets[i] = calls of size in [2^(i-1), 2^i) bytes; bucket 0 = empty calls (size 0). */
  buckets: number[];
  /** Upper bound (bytes, 2^i - 1) of the bucket holding the percentile; null without calls. */
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

export interface MessageSizes {
  tx: SizeStats;
  rx: SizeStats;
  perProcess: Array<{ pid: number; tx: SizeStats; rx: SizeStats }>;
}

/** Statistics of a set of durations in ms (nearest-rank percentiles); null when count is 0. */
export interface DurationStats {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
  /** Counts per bucket: a duration d goes to the first bucket with d <= leMs; leMs null = above all. */
  histogram: Array<{ leMs: number | null; count: number }>;
  /** Percentiles are within 1 % (DDSketch) rather than exact: more than 1024 values, or folded ones. */
  approximate?: boolean;
}

export interface TtfbConnection {
  pid: number;
  socket: string;
  remoteAddr: string;
  remotePort: number;
  /** Upper bound of the time from the flow's start to its first received byte (ms). */
  ms: number;
}

export interface Activity {
  /** ms from the command's start: first flow start, last flow end or sample. */
  firstSeenMs: number;
  lastSeenMs: number;
  /** Sum of the time-series intervals in which bytes were recorded (ms). */
  activeMs: number;
}

export interface Distributions {
  messageSizes: MessageSizes;
  /** Durations of the connections that ended (ConnectionReport.durationMs not null). */
  connectionDurations: DurationStats & { open: number };
  /** TCP time to first byte; upper bounds at the kernel's sampling resolution. */
  timeToFirstByte: DurationStats & { resolutionMs: number; connections: TtfbConnection[] };
  activity: {
    intervalMs: number;
    processes: Array<{ pid: number } & Activity>;
    endpoints: Array<{ proto: Proto; remoteAddr: string; remotePort: number } & Activity>;
  };
}

export type PatternKind = 'periodic' | 'bulk' | 'request-response' | 'fan-out' | 'failed-connects' | 'long-lived-idle';

export interface PatternEndpoint {
  proto: Proto;
  remoteAddr: string;
  remotePort: number;
}

/** The local endpoint a server-side pattern is about: where the connections were accepted. */
export interface PatternLocal {
  proto: Proto;
  localAddr: string;
  localPort: number;
}

/** A traffic pattern found in the trace (docs/patterns.md: kinds, evidence fields, thresholds). */
export interface Pattern {
  kind: PatternKind;
  /** Processes involved, ascending. */
  pids: number[];
  endpoint?: PatternEndpoint;
  /** Server-side patterns (accepted connections): the local endpoint instead of a remote one. */
  local?: PatternLocal;
  /** The numbers the pattern was decided on (ms, bytes, bytes/s, counts). */
  evidence: Record<string, number | string>;
  /** One sentence for the terminal. */
  summary: string;
}
