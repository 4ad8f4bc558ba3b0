// SPDX-License-Identifier: MIT
// eBPF packet capture policy: which packets go to the file (tcpdump filter), what each one is annotated
// with (owning pid and command), when the file is flushed, and what is said about drops.
import type { PacketRecord } from '../kernel/records';
import { PROCTAP_MAX_SNAPLEN } from '../native/layout.generated';
import { containerLabel } from '../proc/container';
import { LINKTYPE_RAW, SECRETS_TYPE_TLS_KEYLOG } from './pcapng';
import { createPcapngWriter, createPcapWriter, fdSink, fileSink, type ByteSink, type PacketWriter, type PcapngWriter } from './writer';
import { createRotatingWriter, secretsAcrossFiles, type RotatingWriter, type RotationHooks, type RotationPlan } from './rotate';
import type { OutputFileOptions } from '../util/output';

export type CaptureFormat = 'pcapng' | 'pcap';
export const DLT_RAW = 12; /* libpcap's name for LINKTYPE_RAW */
/** The most bytes of one packet any capture keeps (bpf/proctap.h). */
export const MAX_SNAPLEN = PROCTAP_MAX_SNAPLEN;

export interface CaptureFileOptions {
  /** File path, or "-" for standard output. */
  path: string;
  /** Already opened for writing (createOutputFile); else the path is created here. */
  fd?: number;
  format: CaptureFormat;
  snaplen: number;
  userAppl: string;
  /** Name of the capture point, e.g. "proctap cgroup proctap-123-run". */
  interfaceName: string;
  /** TLS key log lines for Decryption Secrets Blocks (pcapng only). */
  secrets?: SecretsSource;
  /** -C / -G / -W: the file (`fd`) is the first of several (rotate.ts). */
  rotation?: CaptureRotation;
}

/** Where TLS secrets come from while the trace runs (the run's key log channel). */
export interface SecretsSource {
  /** Complete key log lines ("\n"-terminated) that arrived since the last call, or null. */
  take(): Buffer | null;
}

export interface CaptureRotation {
  plan: RotationPlan;
  output: OutputFileOptions;
  hooks?: RotationHooks;
}

export interface CaptureStats {
  written: number;
  /** Packets the filter rejected (on the ring buffer's poll thread, before JS). */
  filteredOut: number;
  /** Written packets whose socket owner was unknown (marked as such in their comment). */
  unowned: number;
}

/** Monotonic (bpf_ktime_get_ns) to wall-clock nanoseconds: measured once, at capture start. */
export function monotonicToWallOffset(): bigint {
  const wall = BigInt(Date.now()) * 1_000_000n;
  return wall - process.hrtime.bigint();
}

export interface PacketOwner {
  comm?: string;
  /** Network namespace inode, where it is not proctap's own (containers). */
  netns?: number;
  /** Its container, where it runs in one. */
  container?: { id: string; name?: string } | null;
}

export function packetComment(pid: number, owner: PacketOwner | undefined): string {
  if (pid === 0) return 'owner unknown';
  const container = owner?.container ? ` container ${containerLabel(owner.container)}` : '';
  return `pid ${pid} (${owner?.comm ?? '?'})${owner?.netns !== undefined ? ` netns ${owner.netns}` : ''}${container}`;
}

/** With a key log: how long packets wait for the secrets that decrypt them (see writeSecrets). */
export const SECRETS_HOLD_MS = 100;

export class PacketCapture {
  readonly stats: CaptureStats = { written: 0, filteredOut: 0, unowned: 0 };
  private readonly wallOffsetNs = monotonicToWallOffset();

  /** Key log bytes written as Decryption Secrets Blocks. */
  secretsWritten = 0;
  /** With secrets: batches of packets not written yet (their records view their own batch's buffer). */
  private held: Array<{ atMs: number; packets: PacketRecord[] }> = [];
  private batch: PacketRecord[] = [];

  constructor(
    private readonly writer: PacketWriter,
    private readonly describe: (pid: number, startTime?: bigint) => PacketOwner | undefined,
    private readonly secrets?: SecretsSource,
  ) {}

  /**
   * Secrets go in before the packets they decrypt. A client logs its handshake secrets only after the
   * server's first flight arrived, and a reader (Wireshark) must have them when it reads that flight,
   * so with a key log the packets are held SECRETS_HOLD_MS and written after what the channel holds
   * by then: a client logs within microseconds of reading the flight, far inside that.
   */
  private writeSecrets(): void {
    const lines = this.secrets?.take();
    const w = this.writer as Partial<PcapngWriter>;
    if (!lines || lines.length === 0 || !w.writeDecryptionSecrets) return;
    w.writeDecryptionSecrets(SECRETS_TYPE_TLS_KEYLOG, lines);
    this.secretsWritten += lines.length;
  }

  /** Packets reaching here passed the filter already (the addon drops the others). */
  onPacket(p: PacketRecord): void {
    if (this.secrets) this.batch.push(p);
    else this.writePacket(p);
  }

  private writeHeld(all: boolean): void {
    this.writeSecrets();
    const now = Date.now();
    while (this.held.length > 0 && (all || now - this.held[0].atMs >= SECRETS_HOLD_MS)) {
      for (const p of this.held.shift()!.packets) this.writePacket(p);
    }
  }

  private writePacket(p: PacketRecord): void {
    if (p.tgid === 0) this.stats.unowned++;
    const written = this.writer.writePacket({
      timestampNs: BigInt(p.tsNs) + this.wallOffsetNs,
      data: p.data,
      originalLength: p.originalLength,
      direction: p.direction === 'tx' ? 'outbound' : 'inbound',
      comment: this.commentOf(p),
    });
    if (written !== false) this.stats.written++;
  }

  // The last owner and its comment: a flood's packets come from one process, and looking it up (and
  // making its comment) per packet was a measurable part of the capture's cost. The owner is the
  // process tree's live node, so a comm changed by exec still shows.
  private lastTgid = -1;
  private lastStart: bigint | undefined;
  private lastOwner: PacketOwner | undefined;
  private lastComm: string | undefined;
  private lastNetns: number | undefined;
  private lastContainer: PacketOwner['container'];
  private lastComment: string | null = null;

  private commentOf(p: PacketRecord): string {
    if (p.tgid === 0) return packetComment(0, undefined);
    if (p.tgid !== this.lastTgid || p.startTime !== this.lastStart || this.lastOwner === undefined) {
      this.lastOwner = this.describe(p.tgid, p.startTime);
      this.lastTgid = p.tgid;
      this.lastStart = p.startTime;
      this.lastComment = null;
    }
    const owner = this.lastOwner;
    if (this.lastComment === null || owner?.comm !== this.lastComm || owner?.netns !== this.lastNetns || owner?.container !== this.lastContainer) {
      this.lastComment = packetComment(p.tgid, owner);
      this.lastComm = owner?.comm;
      this.lastNetns = owner?.netns;
      this.lastContainer = owner?.container;
    }
    return this.lastComment;
  }

  /** A rotating capture's files, in the order they were last written to. */
  get files(): string[] | undefined {
    return (this.writer as Partial<RotatingWriter>).files?.();
  }

  /** After every ring-buffer batch: a reader following the file sees packets within one poll. */
  flush(): void {
    if (this.secrets) {
      if (this.batch.length > 0) this.held.push({ atMs: Date.now(), packets: this.batch });
      this.batch = [];
      this.writeHeld(false);
    }
    this.writer.flush();
  }

  /** Writes the drop count (pcapng: an interface statistics block) and closes the file. */
  close(dropped: number): void {
    if (this.secrets) {
      if (this.batch.length > 0) this.held.push({ atMs: Date.now(), packets: this.batch });
      this.batch = [];
      this.writeHeld(true);
    }
    const w = this.writer as Partial<PcapngWriter>;
    if (w.writeInterfaceStatistics) {
      w.writeInterfaceStatistics({
        interfaceId: 0,
        timestampNs: process.hrtime.bigint() + this.wallOffsetNs,
        received: this.stats.written + this.stats.filteredOut + dropped,
        dropped,
      });
    }
    this.writer.close();
  }
}

/** Where a capture goes: standard output, a descriptor opened up front, or a path created here. */
export function captureSink(options: Pick<CaptureFileOptions, 'path' | 'fd'>): ByteSink {
  return options.path === '-'
    ? fdSink(1, { label: 'standard output' })
    : options.fd !== undefined
      ? fdSink(options.fd, { label: options.path, closeFd: true })
      : fileSink(options.path);
}

export function openCapture(options: CaptureFileOptions, describe: (pid: number, startTime?: bigint) => PacketOwner | undefined): PacketCapture {
  const sink = captureSink(options);
  const makeWriter = (into: ByteSink): PacketWriter =>
    options.format === 'pcap'
      ? createPcapWriter(into, { linkType: LINKTYPE_RAW, snapLen: options.snaplen, batchPackets: 64 })
      : createPcapngWriter(into, {
          userAppl: options.userAppl,
          interfaces: [{ name: options.interfaceName, linkType: LINKTYPE_RAW, snapLen: options.snaplen, description: 'cgroup_skb hook: L3 packets of the traced sockets' }],
          batchPackets: 64,
        });
  const rotation = options.rotation;
  let secrets = options.format === 'pcap' ? undefined : options.secrets;
  let hooks = rotation?.hooks;
  if (rotation && secrets) ({ source: secrets, hooks } = secretsAcrossFiles(secrets, hooks, SECRETS_TYPE_TLS_KEYLOG));
  const writer = rotation ? createRotatingWriter(rotation.plan, { first: sink, output: rotation.output }, makeWriter, hooks) : makeWriter(sink);
  return new PacketCapture(writer, describe, secrets);
}
