// SPDX-License-Identifier: MIT
// How the traced processes' packets reach the capture file. Two kinds, decided once (captureKind):
//   ebpf     the cgroup_skb hook copies every packet of the traced sockets into the ring buffer (L3);
//   libpcap  libpcap on network devices: run --isolate's end of the veth, attach --netns-capture's
//            namespaces; every frame there, each TCP/UDP packet named by its local port's owner.
// Both sit behind TraceCapture, which the trace session feeds and finishes.
import { loadNative, type PacketFilter } from '../native';
import type { TraceRecord } from '../kernel/records';
import type { KernelStats } from '../kernel/maps';
import type { ProcessNode } from '../model/tree';
import { DLT_RAW, captureSink, openCapture, packetComment, type CaptureFormat, type CaptureRotation, type PacketCapture, type SecretsSource } from '../pcap/capture';
import { startLibpcapRun, type LibpcapRun } from '../pcap/libpcap';
import { PortOwners, packetPorts } from '../pcap/owners';
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2 } from '../pcap/pcapng';
import type { CaptureSummary } from '../schema/report';

export type CaptureKind = 'ebpf' | 'libpcap';

/** The kind of capture a trace makes, and the link type its packets (and so its filter) have. */
export function captureKind(mode: { isolate?: boolean; netnsCapture?: boolean }): { kind: CaptureKind; linkType: number } {
  if (mode.isolate) return { kind: 'libpcap', linkType: LINKTYPE_ETHERNET }; // the veth: Ethernet frames
  if (mode.netnsCapture) return { kind: 'libpcap', linkType: LINKTYPE_LINUX_SLL2 }; // "any": interface and direction per packet
  return { kind: 'ebpf', linkType: DLT_RAW };
}

/** What the user asked to capture. */
export interface CaptureRequest {
  kind: CaptureKind;
  path: string;
  /** The file, already opened by the caller (createOutputFile). */
  fd?: number;
  format: CaptureFormat;
  snaplen: number;
  /** The tcpdump expression (for the report) and its program, compiled up front (compileCaptureFilter). */
  filter: { expression: string; program: PacketFilter } | null;
  /** TLS key log lines to write into the capture as Decryption Secrets Blocks (run's key log channel). */
  secrets?: SecretsSource;
  /** -C / -G / -W: `fd` is the first of several files (pcap/rotate.ts). */
  rotation?: CaptureRotation;
}

/** Compiles a --pcap-filter expression for the capture's link type; throws "invalid filter ...". */
export function compileCaptureFilter(expression: string, snaplen: number, linkType: number): { expression: string; program: PacketFilter } {
  return { expression, program: loadNative().compilePacketFilter(expression, linkType, snaplen) };
}

/** A device to capture with libpcap: run --isolate's veth end, or "any" in a target's namespace. */
export interface LibpcapDevice {
  device: string;
  netnsPath: string;
  /** pcapng if_name / report text, e.g. "pt123n (netns proctap-123)". */
  name: string;
  description: string;
  /** Addresses of the traced side on that device (tells a packet's direction on an Ethernet capture). */
  localAddrs?: string[];
  /** Link type to ask libpcap for (276, LINUX_SLL2, on "any": interface index and direction per packet). */
  linkType?: number;
}

export interface TraceCapture {
  /** Every decoded ring-buffer record, in order. */
  onRecord(record: TraceRecord): void;
  /** After each ring-buffer batch. */
  afterBatch(): void;
  /** Writes what is left, closes the file, says what was written; undefined when the file had failed. */
  finish(stats: KernelStats): Promise<CaptureSummary | undefined>;
  /** Immediate teardown. Idempotent. */
  close(): void;
}

export interface CaptureContext {
  userAppl: string;
  /** The process a packet's owner is (its comment names it). */
  describe: (pid: number, startTime: bigint | null) => ProcessNode | undefined;
  /** A write failed (disk full): called once; the capture keeps its complete blocks. */
  onError: (err: unknown) => void;
  log: (line: string) => void;
}

const where = (path: string) => (path === '-' ? 'standard output' : path);

/** The eBPF packet hook's records into one pcapng/pcap file. */
export function startEbpfCapture(
  request: CaptureRequest,
  interfaceName: string,
  context: CaptureContext,
  packetsFilteredOut: () => number,
): TraceCapture {
  let capture: PacketCapture | null = openCapture(
    { ...request, userAppl: context.userAppl, interfaceName },
    (pid, startTime) => context.describe(pid, startTime ?? null),
  );
  // with a key log the capture holds packets for their secrets: write them out also while no batch comes
  let flushTimer: NodeJS.Timeout | null = request.secrets ? setInterval(() => guarded((c) => c.flush()), 50) : null;
  const stopFlushing = () => {
    if (flushTimer) clearInterval(flushTimer);
    flushTimer = null;
  };
  // A write that fails (disk full) ends the capture: the file keeps its complete blocks.
  const guarded = (write: (c: PacketCapture) => void): void => {
    const c = capture;
    if (!c) return;
    try {
      write(c);
    } catch (err) {
      capture = null;
      try {
        c.close(0);
      } catch {
        /* the first error is the one to report */
      }
      context.onError(err);
    }
  };
  return {
    onRecord(record) {
      if (record.type === 'packet') guarded((c) => c.onPacket(record));
    },
    afterBatch() {
      guarded((c) => c.flush());
    },
    async finish(stats) {
      stopFlushing();
      const c = capture;
      if (!c) return undefined;
      capture = null;
      const dropped = stats.lostRecords.packet ?? 0;
      c.stats.filteredOut = packetsFilteredOut();
      try {
        c.close(dropped);
      } catch (err) {
        context.onError(err);
        return undefined;
      }
      const hint = dropped ? ' (ring buffer full: try --ring-buffer 64M)' : '';
      context.log(`proctap: ${c.stats.written} packets written to ${where(request.path)}, ${dropped} dropped${hint}`);
      return {
        path: request.path,
        format: request.format,
        snaplen: request.snaplen,
        filter: request.filter?.expression ?? null,
        packets: c.stats.written,
        dropped,
        filteredOut: c.stats.filteredOut,
        unowned: c.stats.unowned,
      };
    },
    close() {
      stopFlushing();
      capture?.close(0);
      capture = null;
    },
  };
}

/** Batches are held this long before they are written, so that the ring buffer's records of the same
 *  moment (its poll timer is 50 ms) have told us which process owns each packet's port. */
const LIBPCAP_HOLD_MS = 150;

/** libpcap on `devices`, all into one pcapng file; each TCP/UDP packet named by its local port's owner,
 *  learned from the trace's records. */
export function startLibpcapCapture(request: CaptureRequest, devices: LibpcapDevice[], context: CaptureContext): TraceCapture {
  if (devices.length === 0) throw new Error('libpcap capture without a device');
  const owners = new PortOwners();
  const localAddrs = new Set(devices.flatMap((d) => d.localAddrs ?? []));
  let error: Error | null = null;
  let unowned = 0;
  let run: LibpcapRun | null = startLibpcapRun(
    devices.map((d) => ({ device: d.device, netnsPath: d.netnsPath, name: d.name, description: d.description, linkType: d.linkType, snaplen: request.snaplen, filter: request.filter?.expression })),
    {
      sink: captureSink(request),
      rotation: request.rotation,
      format: request.format,
      secrets: request.secrets,
      userAppl: context.userAppl,
      onError: (err) => {
        error = err;
        context.onError(err);
      },
      holdMs: LIBPCAP_HOLD_MS,
      annotate: (packet, linkType, direction) => {
        const ports = packetPorts(packet.data, linkType);
        const owner = ports ? owners.ownerOf(ports, direction, localAddrs) : undefined;
        if (!owner) {
          unowned++;
          return ports ? 'owner unknown' : 'no socket (not TCP/UDP)';
        }
        return packetComment(owner.pid, context.describe(owner.pid, owner.startTime));
      },
    },
  );
  return {
    onRecord(record) {
      if (record.type === 'sockState' && record.localPort) owners.learn(6, record.localPort, { pid: record.tgid, startTime: record.startTime });
      if (record.type === 'flow' && record.localPort) owners.learn(record.key.proto, record.localPort, { pid: record.key.tgid, startTime: record.key.startTime });
    },
    afterBatch() {},
    async finish() {
      const r = run;
      if (!r) return undefined;
      run = null;
      const results = await r.stop();
      const written = results.reduce((a, s) => a + s.written, 0);
      const dropped = results.reduce((a, s) => a + s.dropped + s.ifDropped, 0);
      const failed = error ? ` (incomplete: ${(error as Error).message})` : '';
      context.log(`proctap: ${written} packets written to ${where(request.path)}${failed}, ${dropped} dropped (libpcap on ${devices.map((d) => d.name).join(', ')})`);
      return {
        source: 'libpcap',
        interfaces: devices.map((d) => d.name),
        path: request.path,
        format: request.format,
        snaplen: request.snaplen,
        filter: request.filter?.expression ?? null,
        packets: written,
        dropped,
        filteredOut: 0,
        unowned,
      };
    },
    close() {
      run?.close();
      run = null;
    },
  };
}
