// SPDX-License-Identifier: MIT
// The probes: the loaded BPF object with its backend choice, load-time configuration, attachment, and
// map access (decoding is kernel/'s). One linear story, as in libbpf-bootstrap: open -> configure ->
// load -> attach -> poll -> close.
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative } from '../native';
import type { BpfObject, PacketFilter } from '../native/native';
import * as L from '../native/layout.generated';
import type { Backend, Packets } from '../schema/report';
import type { FlowKey } from '../kernel/records';
import { TLS_PROGRAMS } from '../tls/programs';
import { flowSlotIndex, mergeFlowSlots, slotFlowOf, withSlot } from '../kernel/slots';
import {
  decodeFlowValue,
  decodeFlows,
  decodePacketCounters,
  decodePacketValue,
  decodeRetransmitMap,
  decodeRetransmits,
  decodeStats,
  type FinalFlow,
  type KernelStats,
  type OwnerPackets,
} from '../kernel/maps';

/** Socket I/O programs of each backend, cheapest first (the auto-selection order). */
export const BACKEND_PROGRAMS: Record<Backend, string[]> = {
  fentry: ['fexit_tcp_sendmsg', 'fexit_tcp_recvmsg', 'fexit_udp_sendmsg', 'fexit_udp_recvmsg', 'fexit_udpv6_sendmsg', 'fexit_udpv6_recvmsg'],
  tracepoint: ['tp_sock_send_length', 'tp_sock_recv_length'],
  kprobe: [
    'kprobe_tcp_sendmsg', 'kretprobe_tcp_sendmsg', 'kprobe_tcp_recvmsg', 'kretprobe_tcp_recvmsg',
    'kprobe_udp_sendmsg', 'kretprobe_udp_sendmsg', 'kprobe_udp_recvmsg', 'kretprobe_udp_recvmsg',
    'kprobe_udpv6_sendmsg', 'kretprobe_udpv6_sendmsg', 'kprobe_udpv6_recvmsg', 'kretprobe_udpv6_recvmsg',
  ],
};
export const AUTO_ORDER: Backend[] = ['fentry', 'tracepoint', 'kprobe'];

/** Programs of a backend for kernel functions that only some kernels have, with the releases that have them. */
const OPTIONAL_PROGRAMS: Partial<Record<Backend, Array<{ program: string; present: (release: string) => boolean }>>> = {
  // sendfile()/splice() into TCP went through tcp_sendpage() until 6.5 (removed by the MSG_SPLICE_PAGES rework)
  fentry: [{ program: 'fexit_tcp_sendpage', present: (r) => kernelBefore(r, 6, 5) }],
  kprobe: [
    { program: 'kprobe_tcp_sendpage', present: (r) => kernelBefore(r, 6, 5) },
    { program: 'kretprobe_tcp_sendpage', present: (r) => kernelBefore(r, 6, 5) },
  ],
};

/** "6.1.0-56-cloud-amd64" is before 6.5. Reading the release is cheap; scanning /proc/kallsyms is not. */
export function kernelBefore(release: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  return Number(m[1]) < major || (Number(m[1]) === major && Number(m[2]) < minor);
}

/** Programs attached wherever tracing happens (process and TCP lifecycle tracepoints). */
const TRACING_PROGRAMS = ['sched_process_fork', 'sched_process_exec', 'sched_process_exit', 'inet_sock_set_state'];
/**
 * sendfile()/splice() entry (one call counted per syscall): their own syscall tracepoints, or where
 * those cannot be attached (no tracefs mounted, no CONFIG_FTRACE_SYSCALLS) raw sys_enter, which runs
 * for every syscall of the machine.
 */
const SPLICE_SYSCALL_PROGRAMS = ['sys_enter_sendfile', 'sys_enter_splice'];
const SPLICE_SYSCALL_FALLBACK = 'sys_enter';
/** Programs attached to the traced cgroup. */
const CGROUP_PROGRAMS = [
  'sock_create', 'sock_release', 'udp_sendmsg4', 'udp_sendmsg6', 'udp_recvmsg4', 'udp_recvmsg6', 'skb_egress', 'skb_ingress',
];

export const DEFAULT_OBJECT = path.resolve(__dirname, '../../../build/bpf/proctap.bpf.o');

export interface ProbeConfig {
  objectPath?: string;
  backend: Backend | 'auto';
  /** Minimum ms between two interval records of one flow. */
  intervalMs: number;
  detailCalls: boolean;
  countUnownedPackets: boolean;
  followChildren: boolean;
  ringBufferBytes: number;
  /** Capture packets of traced sockets (RECORD_PACKET), at most snaplen bytes each. */
  capture?: { snaplen: number };
  /** Start tracing processes that exec with this comm, or exec inside this cgroup (attach --comm/--cgroup). */
  match?: { comm?: string; cgroupId?: bigint };
  /** Copy DNS responses received by traced sockets (RECORD_DNS) for remote names (default on). */
  dnsNames?: boolean;
  /** Count TCP retransmits of traced sockets (default on). */
  retransmits?: boolean;
  /** TLS plaintext from uprobes on TLS libraries (RECORD_DATA, source TLS; default on): loads the uprobe
   *  programs; src/tls decides which files they are attached to. */
  tlsPlaintext?: boolean;
  /** L7 view: RECORD_DATA, the first `snaplen` bytes (1..PROCTAP_DATA_SNAPLEN_MAX) of each send/recv call of
   *  the flows whose first bytes look like a decoded protocol (bpf/l7.bpf.h). Absent: off. */
  l7Data?: { snaplen: number };
}

export interface BackendAttempt {
  backend: Backend;
  /** Loaded and attached: usable. */
  ok: boolean;
  /** Passed the verifier (it may still fail to attach). */
  loaded: boolean;
  reason: string;
}

export type { FinalFlow, KernelStats } from '../kernel/maps';

/** Ring-buffer delivery: the poll period bounds latency; batches are capped in size and in number
 *  waiting for JS (back-pressure into the kernel ring). */
export const RING_POLL_MS = 50;
const RING_MAX_QUEUED_BATCHES = 16;
const RING_MAX_BATCH_BYTES = 2 << 20;

/** Optional features, each a program of its own: left out (not loaded) when turned off. */
const DNS_PROGRAM = 'skb_ingress_dns';
const RETRANSMIT_PROGRAM = 'tcp_retransmit_skb';
const BPF_TRACE_UPROBE_MULTI = 48;
/** L7 view on the tracepoint backend: sendmmsg()/recvmmsg() entry numbers their messages (sys_enter does it too). */
const MMSG_SYSCALL_PROGRAMS = ['sys_enter_sendmmsg', 'sys_enter_recvmmsg'];

function errorText(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const first = (e.message ?? String(err)).split('\n')[0];
  return e.code && !first.includes(e.code) ? `${e.code}: ${first}` : first;
}

export class BackendError extends Error {
  constructor(readonly attempts: BackendAttempt[]) {
    const why = attempts.map((a) => `${a.backend}: ${a.reason}`).join('; ');
    super(attempts.length === 1 ? `backend ${why}` : `no usable socket I/O backend (${why})`);
  }
}

export class Probes {
  readonly links: number[] = [];
  /** traced_user_bits as written (bpf/proctap.bpf.h): user space is its only writer, so it keeps the words. */
  private readonly userBits = new Map<number, bigint>();

  /** Why retransmits are not counted, when they are not (the tracepoint would not attach). */
  retransmitsUnavailable: string | null = null;

  private constructor(
    private readonly object: BpfObject,
    readonly backend: Backend,
    readonly attempts: BackendAttempt[],
    private readonly config: ProbeConfig,
  ) {}

  /** Opens, configures and loads the object with the first backend that loads and attaches. */
  static open(config: ProbeConfig): Probes {
    const native = loadNative();
    const objectPath = config.objectPath ?? DEFAULT_OBJECT;
    const candidates = config.backend === 'auto' ? AUTO_ORDER : [config.backend];
    const attempts: BackendAttempt[] = [];
    for (const backend of candidates) {
      const object = native.openObject(objectPath);
      const present = new Set(object.programs());
      if (!BACKEND_PROGRAMS[backend].every((p) => present.has(p))) {
        object.close();
        attempts.push({ backend, ok: false, loaded: false, reason: 'not built into this proctap object' });
        continue;
      }
      for (const [other, programs] of Object.entries(BACKEND_PROGRAMS)) {
        if (other !== backend) for (const p of programs) if (present.has(p)) object.setAutoload(p, false);
      }
      const optional: string[] = [];
      for (const [owner, list] of Object.entries(OPTIONAL_PROGRAMS)) {
        for (const { program, present: inKernel } of list ?? []) {
          if (!present.has(program)) continue;
          if (owner === backend && inKernel(os.release())) optional.push(program);
          else object.setAutoload(program, false);
        }
      }
      if (config.dnsNames === false && present.has(DNS_PROGRAM)) object.setAutoload(DNS_PROGRAM, false);
      if (config.retransmits === false && present.has(RETRANSMIT_PROGRAM)) object.setAutoload(RETRANSMIT_PROGRAM, false);
      for (const [kind, programs] of Object.entries(TLS_PROGRAMS)) {
        for (const p of Object.values(programs)) {
          if (!present.has(p)) continue;
          if (config.tlsPlaintext === false) object.setAutoload(p, false);
          else if (kind === 'multi') object.setExpectedAttachType(p, BPF_TRACE_UPROBE_MULTI);
        }
      }
      const mmsg = config.l7Data !== undefined && backend === 'tracepoint';
      for (const p of MMSG_SYSCALL_PROGRAMS) if (!mmsg && present.has(p)) object.setAutoload(p, false);
      try {
        configure(object, config);
        object.load();
      } catch (err) {
        object.close();
        attempts.push({ backend, ok: false, loaded: false, reason: `refused at load: ${errorText(err)}` });
        continue;
      }
      const tracer = new Probes(object, backend, attempts, config);
      try {
        for (const p of [...BACKEND_PROGRAMS[backend], ...optional]) tracer.links.push(object.attach(p));
      } catch (err) {
        object.close();
        attempts.push({ backend, ok: false, loaded: true, reason: `passes the verifier but cannot attach: ${errorText(err)}` });
        continue;
      }
      attempts.push({ backend, ok: true, loaded: true, reason: 'loads and attaches' });
      return tracer;
    }
    throw new BackendError(attempts);
  }

  attachTracing(): void {
    for (const p of TRACING_PROGRAMS) this.links.push(this.object.attach(p));
    this.attachSpliceSyscalls();
    if (this.config.retransmits !== false) {
      // An extra, not a reason to refuse tracing: a kernel without the tracepoint still traces the rest.
      try {
        this.links.push(this.object.attach(RETRANSMIT_PROGRAM));
      } catch (err) {
        this.retransmitsUnavailable = errorText(err);
      }
    }
  }

  /** How sendfile()/splice() entry is hooked: 'syscall tracepoints', or 'sys_enter' (every syscall). */
  spliceSyscallHook: 'syscall tracepoints' | 'sys_enter' | null = null;

  private attachSpliceSyscalls(): void {
    const links: number[] = [];
    const mmsg = this.config.l7Data !== undefined && this.backend === 'tracepoint' ? MMSG_SYSCALL_PROGRAMS : [];
    try {
      for (const p of [...SPLICE_SYSCALL_PROGRAMS, ...mmsg]) links.push(this.object.attach(p));
      this.links.push(...links);
      this.spliceSyscallHook = 'syscall tracepoints';
    } catch {
      for (const link of links) this.object.detach(link);
      this.links.push(this.object.attach(SPLICE_SYSCALL_FALLBACK));
      this.spliceSyscallHook = 'sys_enter';
    }
  }

  attachCgroup(dir: string): void {
    for (const p of CGROUP_PROGRAMS) this.links.push(this.object.attachCgroup(p, dir));
    if (this.config.dnsNames !== false) this.links.push(this.object.attachCgroup(DNS_PROGRAM, dir));
  }

  /** A uprobe (retprobe: uretprobe) of `program` on `symbol` in the file at binaryPath, for every process
   *  mapping it; `cookie` tells the program what the function is. Returns the link (gone at close()). */
  attachUprobe(program: string, binaryPath: string, symbol: string, options: { retprobe?: boolean; cookie?: number } = {}): number {
    const link = this.object.attachUprobe(program, binaryPath, symbol, { retprobe: options.retprobe ?? false, pid: -1, cookie: options.cookie ?? 0 });
    this.links.push(link);
    return link;
  }

  /** One uprobe_multi link of `program` at the file offsets of binaryPath (cookies[i] for offsets[i]). */
  attachUprobeMulti(program: string, binaryPath: string, offsets: number[], options: { retprobe?: boolean; cookies?: number[] } = {}): number {
    const link = this.object.attachUprobeMulti(program, binaryPath, offsets, { retprobe: options.retprobe ?? false, cookies: options.cookies, pid: -1 });
    this.links.push(link);
    return link;
  }

  detach(link: number): void {
    this.object.detach(link);
    const at = this.links.indexOf(link);
    if (at >= 0) this.links.splice(at, 1);
  }

  /** Processes in the kernel's traced set (alive: the exit hook removes them). */
  tracedPids(): number[] {
    const dump = this.object.mapDump('traced');
    const pids: number[] = [];
    for (let i = 0; i < dump.count; i++) pids.push(dump.keys.readUInt32LE(i * dump.keySize));
    return pids;
  }

  addTraced(pid: number, startTimeNs = 0n): void {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(pid);
    const value = Buffer.alloc(L.traced_process.size);
    value.writeBigUInt64LE(startTimeNs, L.traced_process.start_time_ns);
    this.setUserBit(pid, true); // first: a bit without its entry only costs the hooks a lookup
    this.object.mapUpdate('traced', key, value, 0);
  }

  /** The process's bit in traced_user_bits, which lets the socket hooks look it up in `traced`. */
  private setUserBit(pid: number, on: boolean): void {
    const word = Math.floor(pid / 64);
    const bit = 1n << BigInt(pid % 64);
    const old = this.userBits.get(word) ?? 0n;
    const next = on ? old | bit : old & ~bit;
    this.userBits.set(word, next);
    const key = Buffer.alloc(4);
    key.writeUInt32LE(word);
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(next);
    this.object.mapUpdate('traced_user_bits', key, value, 0);
  }

  /** A process that turned out gone (its pid must not trace whoever gets it next). */
  removeTraced(pid: number): void {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(pid);
    this.object.mapDelete('traced', key);
    this.setUserBit(pid, false);
  }

  /** A listening socket an attach target opened before the attach (bpf/proctap.h, struct listener_key):
   *  the connections it accepts get `pid` as their owner from their SYN on. */
  addListener(listener: { netns: number; port: number; addr: Uint8Array }, pid: number, startTimeNs = 0n): void {
    const key = Buffer.alloc(L.listener_key.size);
    key.writeUInt32LE(listener.netns, L.listener_key.netns);
    key.writeUInt16LE(listener.port, L.listener_key.port);
    key.set(listener.addr.subarray(0, 16), L.listener_key.addr);
    const value = Buffer.alloc(L.process_id.size);
    value.writeUInt32LE(pid, L.process_id.tgid);
    value.writeBigUInt64LE(startTimeNs, L.process_id.start_time_ns);
    this.object.mapUpdate('listeners', key, value, 0);
  }

  /** Starts the poll thread; with a filter, packet records it rejects are dropped before they reach JS. */
  start(onBatch: (batch: ArrayBuffer) => void, packetFilter: PacketFilter | null = null): void {
    const hook = packetFilter
      ? {
          filter: packetFilter,
          recordType: L.RECORD_PACKET,
          dataOffset: L.packet_record.size,
          capLenOffset: L.packet_record.cap_len,
          origLenOffset: L.packet_record.orig_len,
        }
      : undefined;
    this.object.startRingBuffer('events', onBatch, {
      pollMs: RING_POLL_MS,
      maxQueuedBatches: RING_MAX_QUEUED_BATCHES,
      maxBatchBytes: RING_MAX_BATCH_BYTES,
      packetFilter: hook,
    });
  }

  packetsFilteredOut(): number {
    return this.object.packetsFilteredOut();
  }

  stop(): Promise<void> {
    return this.object.stopRingBuffer();
  }

  /** Final counters of a flow, removed from the kernel table (its socket is gone). */
  takeFlow(key: FlowKey): FinalFlow | null {
    const index = Buffer.alloc(4);
    index.writeUInt32LE(flowSlotIndex(key.cookie));
    // the slot first: once the entry is gone, a new flow may claim the slot (bpf/proctap.h, struct flow_slot)
    const slot = slotFlowOf(key, this.object.mapLookup('flow_slots', index));
    const value = this.object.mapLookupAndDelete('flows', Buffer.from(key.raw));
    return value ? withSlot(decodeFlowValue(key, value), slot) : null;
  }

  dumpFlows(): FinalFlow[] {
    return mergeFlowSlots(decodeFlows(this.object.mapDump('flows')), this.object.mapDump('flow_slots'));
  }

  /** A socket's retransmit total as last seen in kernel, removed from the kernel table (its socket was released). */
  takeRetransmits(cookie: bigint): number {
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(cookie);
    const value = this.object.mapLookupAndDelete('retransmits', key);
    return value ? decodeRetransmits(value) : 0;
  }

  dumpRetransmits(): Map<bigint, number> {
    return decodeRetransmitMap(this.object.mapDump('retransmits'));
  }

  /** One owner's packet counters, removed from the kernel table (the process was folded into a group). */
  takePackets(tgid: number, startTime: bigint): Packets | null {
    const key = Buffer.alloc(L.process_id.size);
    key.writeUInt32LE(tgid, L.process_id.tgid);
    key.writeBigUInt64LE(startTime, L.process_id.start_time_ns);
    const value = this.object.mapLookupAndDelete('packets', key);
    return value ? decodePacketValue(value) : null;
  }

  /** Packet counters per socket owner (tgid 0: owner unknown). */
  dumpPackets(): OwnerPackets[] {
    return decodePacketCounters(this.object.mapDump('packets'));
  }

  readStats(): KernelStats {
    return decodeStats(this.object.getInitialValue('.bss'));
  }

  close(): void {
    this.object.close();
  }
}

function configure(object: BpfObject, config: ProbeConfig): void {
  const l7Snaplen = config.l7Data?.snaplen;
  if (l7Snaplen !== undefined && !(Number.isInteger(l7Snaplen) && l7Snaplen >= 1 && l7Snaplen <= L.PROCTAP_DATA_SNAPLEN_MAX)) {
    throw new RangeError(`L7 snaplen must be 1..${L.PROCTAP_DATA_SNAPLEN_MAX}, got ${l7Snaplen}`);
  }
  const rodata = object.getInitialValue('.rodata');
  rodata.writeBigUInt64LE(BigInt(Math.round(config.intervalMs * 1e6)), L.proctap_config.interval_ns);
  rodata.writeUInt32LE(Math.max(4096, config.ringBufferBytes >>> 3), L.proctap_config.wakeup_bytes);
  // L7 data records look at the ring's fill every this many bytes per CPU rather than at every record
  // (a helper call each): all CPUs together overshoot the wakeup mark by half of it at most.
  rodata.writeUInt32LE(Math.max(1024, Math.floor((config.ringBufferBytes >>> 3) / (2 * Math.max(1, os.cpus().length)))), L.proctap_config.wakeup_check_bytes);
  rodata.writeUInt8(config.followChildren ? 1 : 0, L.proctap_config.follow_children);
  rodata.writeUInt8(config.detailCalls ? 1 : 0, L.proctap_config.detail_calls);
  rodata.writeUInt8(config.countUnownedPackets ? 1 : 0, L.proctap_config.count_unowned_packets);
  rodata.writeUInt8(config.capture ? 1 : 0, L.proctap_config.capture);
  rodata.writeUInt32LE(config.capture?.snaplen ?? 0, L.proctap_config.snaplen);
  if (config.match?.comm) rodata.write(config.match.comm.slice(0, L.PROCTAP_COMM_LEN - 1), L.proctap_config.match_comm, 'utf8');
  rodata.writeBigUInt64LE(config.match?.cgroupId ?? 0n, L.proctap_config.match_cgroup_id);
  rodata.writeUInt8(config.dnsNames === false ? 0 : 1, L.proctap_config.dns_names);
  rodata.writeUInt8(config.retransmits === false ? 0 : 1, L.proctap_config.retransmits);
  rodata.writeUInt8(config.l7Data ? 1 : 0, L.proctap_config.l7_data);
  rodata.writeUInt32LE(config.l7Data?.snaplen ?? 0, L.proctap_config.data_snaplen);
  object.setInitialValue('.rodata', rodata);
  if (config.tlsPlaintext !== false && object.maps().includes('.rodata.tls')) {
    const tls = object.getInitialValue('.rodata.tls');
    tls.writeUInt32LE(1, L.tls_config.enabled);
    tls.writeUInt32LE(L.PROCTAP_DATA_SNAPLEN, L.tls_config.snaplen);
    object.setInitialValue('.rodata.tls', tls);
  }
  object.setMapMaxEntries('events', config.ringBufferBytes);
}
