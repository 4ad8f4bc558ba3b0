// SPDX-License-Identifier: MIT
// libpcap captures (on a device, possibly inside another network namespace) into the packet writer: one
// interface block per capture, packets as their batches arrive, and pcap_stats in an interface
// statistics block per capture at the end.
import { loadNative, type LibpcapCapture, type LibpcapCaptureOptions, type LibpcapCaptureStats } from '../native';
import * as L from '../native/layout.generated';
import { LINKTYPE_LINUX_SLL2, SECRETS_TYPE_TLS_KEYLOG, type PacketDirection } from './pcapng';
import { createPcapngWriter, createPcapWriter, type ByteSink, type PacketWriter, type PcapngWriter } from './writer';
import { createRotatingWriter, secretsAcrossFiles, type RotationHooks, type RotationPlan } from './rotate';
import type { OutputFileOptions } from '../util/output';

/** Kernel ring per capture unless a source says otherwise. libpcap's 2 MiB drops about a third of the
 *  packets of a bulk TCP transfer over a veth (~600 MB/s, 64 KiB GSO packets); 32 MiB dropped none. */
export const DEFAULT_LIBPCAP_BUFFER_BYTES = 32 << 20;
/** TPACKET_V3 block timeout: a partly filled block is handed over after this long (latency bound). */
export const LIBPCAP_BLOCK_TIMEOUT_MS = 100;
/** At stop, after the reject-all filter: two block timeouts (the kernel hands a partly filled block over
 *  only when its timer fires), plus a margin. */
const LIBPCAP_DRAIN_MS = 2 * LIBPCAP_BLOCK_TIMEOUT_MS + 20;
const LIBPCAP_MAX_BATCH_BYTES = 4 << 20;
const LIBPCAP_MAX_QUEUED_BATCHES = 16;

/** The mechanism's options for one source, with proctap's choices where the source leaves them open. */
export function libpcapOptions(source: LibpcapSourceOptions): LibpcapCaptureOptions {
  return {
    ...source,
    bufferSize: source.bufferSize ?? DEFAULT_LIBPCAP_BUFFER_BYTES,
    timeoutMs: source.timeoutMs ?? LIBPCAP_BLOCK_TIMEOUT_MS,
    drainMs: source.drainMs ?? (source.timeoutMs !== undefined ? 2 * source.timeoutMs + 20 : LIBPCAP_DRAIN_MS),
    maxBatchBytes: source.maxBatchBytes ?? LIBPCAP_MAX_BATCH_BYTES,
    maxQueuedBatches: source.maxQueuedBatches ?? LIBPCAP_MAX_QUEUED_BATCHES,
  };
}

/** A source's options: the mechanism's, with the sizes and timings optional (libpcapOptions fills them). */
export type LibpcapSourceOptions = Omit<LibpcapCaptureOptions, 'bufferSize' | 'timeoutMs' | 'drainMs' | 'maxBatchBytes' | 'maxQueuedBatches'> &
  Partial<Pick<LibpcapCaptureOptions, 'bufferSize' | 'timeoutMs' | 'drainMs' | 'maxBatchBytes' | 'maxQueuedBatches'>>;

export interface LibpcapPacket {
  /** Wall clock (CLOCK_REALTIME), nanoseconds. */
  timestampNs: bigint;
  /** From the link-layer header on, as the device's link type says. */
  data: Uint8Array;
  originalLength: number;
}

/** Splits one LibpcapCapture batch (struct libpcap_packet_header, the bytes, pad to 8; repeated). */
export function decodeLibpcapBatch(batch: ArrayBuffer): LibpcapPacket[] {
  const view = new DataView(batch);
  const out: LibpcapPacket[] = [];
  const H = L.libpcap_packet_header;
  let at = 0;
  while (at < batch.byteLength) {
    if (at + H.size > batch.byteLength) throw new RangeError(`libpcap capture batch: truncated header at ${at}`);
    const capLen = view.getUint32(at + H.cap_len, true);
    const start = at + H.size;
    if (start + capLen > batch.byteLength) throw new RangeError(`libpcap capture batch: packet at ${at} runs past the end`);
    out.push({
      timestampNs: view.getBigUint64(at + H.timestamp_ns, true),
      data: new Uint8Array(batch, start, capLen),
      originalLength: view.getUint32(at + H.orig_len, true),
    });
    at = start + ((capLen + 7) & ~7);
  }
  return out;
}

const SLL2_HEADER_LENGTH = 20;
const PACKET_OUTGOING = 4;
const PACKET_OTHERHOST = 3;

/** Direction from a LINKTYPE_LINUX_SLL2 header's packet type: PACKET_OUTGOING is outbound; host,
 *  broadcast, multicast and other-host are inbound; anything else is left unknown. */
export function sll2Direction(data: Uint8Array): PacketDirection | undefined {
  if (data.length < SLL2_HEADER_LENGTH) return undefined;
  const packetType = data[10];
  if (packetType === PACKET_OUTGOING) return 'outbound';
  if (packetType <= PACKET_OTHERHOST) return 'inbound';
  return undefined;
}

/** The interface index a LINKTYPE_LINUX_SLL2 header names (in the capture's network namespace). */
export function sll2InterfaceIndex(data: Uint8Array): number | undefined {
  if (data.length < SLL2_HEADER_LENGTH) return undefined;
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(4, false);
}

export type LibpcapSource = LibpcapSourceOptions & {
  /** if_name of its interface block (default: the device name). */
  name?: string;
  /** if_description (e.g. which namespace). */
  description?: string;
};

export interface LibpcapRunOptions {
  sink: ByteSink;
  format?: 'pcapng' | 'pcap';
  userAppl: string;
  comment?: string;
  /** A write failed (ENOSPC, EPIPE, ...): called once; later packets are not written. */
  onError?: (error: Error) => void;
  /** Opens one capture; default the addon's LibpcapCapture (tests pass a fake). */
  open?: (options: LibpcapCaptureOptions, onBatch: (batch: ArrayBuffer) => void) => LibpcapCapture;
  /** The comment of each packet (e.g. its owning process), given its link type and direction. */
  annotate?: (packet: LibpcapPacket, linkType: number, direction: PacketDirection | undefined) => string | undefined;
  /** TLS key log lines, written as Decryption Secrets Blocks before each batch's packets (pcapng only). */
  secrets?: { take(): Buffer | null };
  /** Hold batches this long before writing them (so that annotate() knows about sockets whose records
   *  travel on another path, the ring buffer); stop() writes what is held. Default 0: write at once. */
  holdMs?: number;
  /** -C / -G / -W: `sink` is the first of several files (rotate.ts). */
  rotation?: { plan: RotationPlan; output: OutputFileOptions; hooks?: RotationHooks };
}

export interface LibpcapSourceResult extends LibpcapCaptureStats {
  /** Packets written to the file from this source. */
  written: number;
}

export interface LibpcapRun {
  /** Per source, in order: its device and the link type libpcap gave it (its IDB). */
  readonly interfaces: ReadonlyArray<{ device: string; linkType: number }>;
  /** Stops every capture (final drain), writes their statistics, closes the file. */
  stop(): Promise<LibpcapSourceResult[]>;
  /** Immediate teardown: threads joined, undelivered packets dropped, file closed. Idempotent. */
  close(): void;
}

export function checkLibpcapSource(s: LibpcapSource): void {
  if (typeof s.device !== 'string' || s.device === '') throw new TypeError('libpcap capture: device must be a non-empty string');
  if (!Number.isInteger(s.snaplen) || s.snaplen < 1 || s.snaplen > L.PROCTAP_MAX_SNAPLEN) {
    throw new RangeError(`libpcap capture: snaplen must be 1..${L.PROCTAP_MAX_SNAPLEN}, got ${s.snaplen}`);
  }
  if (s.netnsPath !== undefined && (typeof s.netnsPath !== 'string' || s.netnsPath === '')) throw new TypeError('libpcap capture: netnsPath must be a non-empty string');
  if (s.filter !== undefined && typeof s.filter !== 'string') throw new TypeError('libpcap capture: filter must be a string');
}

export function startLibpcapRun(sources: LibpcapSource[], options: LibpcapRunOptions): LibpcapRun {
  if (sources.length === 0) throw new RangeError('libpcap capture: no source');
  if (options.format === 'pcap' && sources.length > 1) throw new RangeError('libpcap capture: classic pcap holds one interface; use pcapng');
  sources.forEach(checkLibpcapSource);
  const open = options.open ?? ((o, onBatch) => new (loadNative().LibpcapCapture)(o, onBatch));
  // rotated files each carry the secrets taken so far
  let secretsSource = options.secrets;
  let rotationHooks = options.rotation?.hooks;
  if (options.rotation && secretsSource) ({ source: secretsSource, hooks: rotationHooks } = secretsAcrossFiles(secretsSource, rotationHooks, SECRETS_TYPE_TLS_KEYLOG));

  let writer: PacketWriter | undefined;
  let failed = false;
  const written = sources.map(() => 0);
  const linkTypes: number[] = [];
  const writeBatch = (index: number, batch: ArrayBuffer): void => {
    if (failed || writer === undefined) return;
    try {
      const linkType = linkTypes[index];
      const secrets = secretsSource?.take();
      if (secrets && (writer as Partial<PcapngWriter>).writeDecryptionSecrets) (writer as PcapngWriter).writeDecryptionSecrets(SECRETS_TYPE_TLS_KEYLOG, secrets);
      for (const p of decodeLibpcapBatch(batch)) {
        const direction = linkType === LINKTYPE_LINUX_SLL2 ? sll2Direction(p.data) : undefined;
        if (writer.writePacket({ ...p, interfaceId: index, direction, comment: options.annotate?.(p, linkType, direction) }) !== false) written[index]++;
      }
      writer.flush();
    } catch (err) {
      failed = true;
      options.onError?.(err as Error);
    }
  };
  // Held batches, oldest first (one queue for all sources: the file keeps their arrival order).
  const held: Array<{ index: number; batch: ArrayBuffer; at: number }> = [];
  let holdTimer: NodeJS.Timeout | null = null;
  const writeHeld = (all: boolean): void => {
    const now = Date.now();
    while (held.length > 0 && (all || now - held[0].at >= (options.holdMs ?? 0))) {
      const h = held.shift()!;
      writeBatch(h.index, h.batch);
    }
    if (holdTimer) clearTimeout(holdTimer);
    holdTimer = held.length > 0 ? setTimeout(() => writeHeld(false), Math.max(1, (options.holdMs ?? 0) - (now - held[0].at))) : null;
  };
  const onBatch = (index: number) => (batch: ArrayBuffer): void => {
    if (!options.holdMs) return writeBatch(index, batch);
    held.push({ index, batch, at: Date.now() });
    if (!holdTimer) writeHeld(false);
  };

  // Batches arrive on the event loop, so none can come before the writer below exists.
  const captures: LibpcapCapture[] = [];
  try {
    sources.forEach((s, i) => {
      const { name: _name, description: _description, ...native } = s;
      const capture: LibpcapCapture = open(libpcapOptions(native), onBatch(i));
      captures.push(capture);
      linkTypes.push(capture.linkType);
    });
    const makeWriter = (sink: ByteSink): PacketWriter =>
      options.format === 'pcap'
        ? createPcapWriter(sink, { linkType: captures[0].linkType, snapLen: sources[0].snaplen, batchPackets: 64 })
        : createPcapngWriter(sink, {
            userAppl: options.userAppl,
            comment: options.comment,
            interfaces: sources.map((s, i) => ({ name: s.name ?? s.device, description: s.description, linkType: captures[i].linkType, snapLen: s.snaplen })),
            batchPackets: 64,
          });
    const rotation = options.rotation;
    writer = rotation ? createRotatingWriter(rotation.plan, { first: options.sink, output: rotation.output }, makeWriter, rotationHooks) : makeWriter(options.sink);
  } catch (err) {
    for (const c of captures) c.close();
    throw err;
  }

  let closed = false;
  const closeWriter = (): void => {
    if (closed) return;
    closed = true;
    try {
      writer?.close();
    } catch (err) {
      if (!failed) options.onError?.(err as Error);
      failed = true;
    }
  };
  return {
    interfaces: captures.map((c) => ({ device: c.device, linkType: c.linkType })),
    async stop() {
      const stats = await Promise.all(captures.map((c) => c.stop()));
      writeHeld(true);
      const pcapng = writer as Partial<PcapngWriter>;
      if (!closed && !failed && pcapng.writeInterfaceStatistics) {
        const now = BigInt(Date.now()) * 1_000_000n;
        try {
          stats.forEach((s, i) =>
            pcapng.writeInterfaceStatistics!({ interfaceId: i, timestampNs: now, received: s.received, dropped: s.ifDropped, osDropped: s.dropped, comment: s.error }),
          );
        } catch (err) {
          failed = true;
          options.onError?.(err as Error);
        }
      }
      closeWriter();
      return stats.map((s, i) => ({ ...s, written: written[i] }));
    },
    close() {
      for (const c of captures) c.close();
      if (holdTimer) clearTimeout(holdTimer);
      held.length = 0;
      closeWriter();
    },
  };
}
