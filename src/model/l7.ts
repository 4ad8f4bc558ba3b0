// SPDX-License-Identifier: MIT
// The L7 view of the model (--l7): data records (the head of each send/recv call, and TLS plaintext
// from the library hooks) routed to one ConnectionDecoder per flow (a TCP socket and its process; a
// UDP socket per remote), and each decoded exchange handed on with its process and its endpoint as the
// report names it. The summaries are made above (analysis/l7-aggregate.ts, fed by the session through
// `onExchange`). Bounded: a decoder's buffers are capped by the decoder, the decoders alive by
// `maxDecoders` (the least recently fed one is closed first), and a socket's decoders are closed when
// the kernel releases it. What could not be decoded is counted for the report's notes.
import { ConnectionDecoder, type DecoderStatus, type Exchange } from '../l7';
import type { DataFlag, DataRecord, FlowKey } from '../kernel/records';
import type { ServiceEndpoint } from './service';

/** Decoders alive at once, by default. Each holds at most 2 × bufferCap copied bytes per layer. */
export const DEFAULT_MAX_DECODERS = 2048;
/** Distinct reasons kept for the notes (the rest are counted under "other"). */
const MAX_REASONS = 32;

/** Where an endpoint's name came from: a DNS answer the process received, the TLS SNI it sent, the
 *  HTTP Host (or :authority) it sent. */
export type NameSource = 'dns' | 'sni' | 'host';

/** The remote end of an exchange, as the report names it (report/sections.ts endpointFields). */
export interface L7Endpoint {
  /** "api.test:443", "127.0.0.1:6379", "127.0.0.1 → :80" (clients of our port 80), "[::1]:53". */
  label: string;
  service: ServiceEndpoint;
  name?: string;
  nameSource?: NameSource;
}

/** One decoded exchange with the flow it came from. */
export interface L7Event {
  pid: number;
  startTime: bigint;
  socket: bigint;
  endpoint: L7Endpoint;
  exchange: Exchange;
}

/** What could not be decoded, for the report's notes. */
export interface L7Counts {
  /** Data records routed to a decoder, and the ones of them that came from TLS plaintext. */
  records: number;
  tlsRecords: number;
  /** Records whose bytes are missing: not copied (sendfile, splice, kernel pages), copy failed, no buffer
   *  known (io_uring); and records whose bytes were cut at the copy limit. */
  missing: Record<DataFlag, number>;
  cut: number;
  /** TLS plaintext whose socket the kernel did not know: not decoded. */
  tlsWithoutSocket: number;
  /** Decoders (connections, UDP flows) by how they ended; `evicted`: closed early by the decoder cap. */
  connections: { total: number; decoded: number; unknown: number; undecodable: number; opaque: number; evicted: number };
  /** TLS connections whose plaintext was decoded. */
  plaintext: number;
  /** Why connections were unknown, undecodable or opaque: "unknown: no protocol matched" → count. */
  reasons: Map<string, number>;
  exchanges: number;
  partial: number;
}

export interface L7ViewOptions {
  /** false (attach): sockets opened before the trace are decoded as seen mid-stream. */
  fromStart: boolean;
  maxDecoders?: number;
  bufferCap?: number;
  onExchange: (e: L7Event) => void;
  /** The flow's service endpoint (the model's, as the report groups traffic). */
  serviceOf: (key: FlowKey) => ServiceEndpoint;
  /** The name a DNS answer gave the address by then, if any. */
  dnsName: (address: string, atNs: number) => string | undefined;
  /** The TCP connection's start was seen (connect/accept during the trace). */
  startSeen: (cookie: bigint) => boolean;
}

interface Tracked {
  decoder: ConnectionDecoder;
  key: FlowKey;
  cookie: bigint;
  endpoint: L7Endpoint | null;
  /** The last chunk's time: an evicted decoder closes there. */
  lastNs: number;
  /** A name the bytes gave (SNI, Host), kept once found. */
  said: { name: string; source: NameSource } | null;
}

const zeroMissing = (): Record<DataFlag, number> => ({ notCopied: 0, copyFailed: 0, noBuffer: 0 });

export function newL7Counts(): L7Counts {
  return {
    records: 0, tlsRecords: 0, missing: zeroMissing(), cut: 0, tlsWithoutSocket: 0,
    connections: { total: 0, decoded: 0, unknown: 0, undecodable: 0, opaque: 0, evicted: 0 },
    plaintext: 0, reasons: new Map(), exchanges: 0, partial: 0,
  };
}

const bracket = (addr: string) => (addr.includes(':') ? `[${addr}]` : addr);

/** "api.test:443", "127.0.0.1 → :80": the terminal report's endpoint text, a name in place of the address. */
export function endpointLabel(e: ServiceEndpoint, name?: string): string {
  if (e.direction === 'inbound') return `${bracket(e.remoteAddr)} → :${e.port}`;
  return `${name ?? bracket(e.remoteAddr)}:${e.port}`;
}

/** A Host header or :authority without its port: "api.test:8080" → "api.test", "[::1]:80" → "::1". */
export function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const colon = h.lastIndexOf(':');
  return colon > 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

/** A name the exchange's bytes give the remote: the SNI a client sent, the Host it asked for. */
function saidName(x: Exchange): { name: string; source: NameSource } | null {
  if (x.role !== 'client') return null;
  if (x.detail.kind === 'tls' && x.detail.sni) return { name: x.detail.sni.toLowerCase(), source: 'sni' };
  if (x.detail.kind === 'http' && x.detail.host) {
    const name = hostName(x.detail.host);
    // a Host that is an address names nothing
    if (name && !/^[\d.]+$/.test(name) && !name.includes(':')) return { name, source: 'host' };
  }
  return null;
}

export class L7View {
  readonly counts = newL7Counts();
  /** Live decoders by flow id, least recently fed first. */
  private readonly live = new Map<string, Tracked>();
  private readonly bySocket = new Map<bigint, Set<string>>();
  private readonly maxDecoders: number;

  constructor(private readonly options: L7ViewOptions) {
    this.maxDecoders = Math.max(1, options.maxDecoders ?? DEFAULT_MAX_DECODERS);
  }

  /** Decoders alive now. */
  get decoders(): number {
    return this.live.size;
  }

  /** Copied bytes the live decoders hold. */
  get bufferedBytes(): number {
    let n = 0;
    for (const t of this.live.values()) n += t.decoder.bufferedBytes;
    return n;
  }

  onData(r: DataRecord): void {
    const tls = r.source === 'tls';
    if (tls && r.key.cookie === 0n) {
      this.counts.tlsWithoutSocket++;
      return;
    }
    const c = this.counts;
    c.records++;
    if (tls) c.tlsRecords++;
    const flags = r.flags;
    if (flags.length === 0) {
      if (r.bytes.length < r.length) c.cut++;
    } else for (let i = 0; i < flags.length; i++) c.missing[flags[i]]++;
    const t = this.tracked(r.key);
    t.lastNs = r.tsNs;
    const xs = t.decoder.push({ direction: r.direction, tsNs: r.tsNs, offset: r.offset, length: r.length, bytes: r.bytes, tls });
    for (let i = 0; i < xs.length; i++) this.emit(t, xs[i]);
  }

  /** The kernel released the socket: its decoders are closed (exchanges in flight given as they are). */
  onRelease(cookie: bigint, tsNs: number): void {
    const ids = this.bySocket.get(cookie);
    if (!ids) return;
    for (const id of [...ids]) {
      const t = this.live.get(id);
      if (t) this.close(t, tsNs);
    }
  }

  /** The end of the trace: every decoder is closed. */
  finish(tsNs: number): void {
    for (const t of [...this.live.values()]) this.close(t, tsNs);
  }

  private tracked(key: FlowKey): Tracked {
    let t = this.live.get(key.id);
    if (t) {
      // least recently fed first: move to the end
      this.live.delete(key.id);
      this.live.set(key.id, t);
      return t;
    }
    while (this.live.size >= this.maxDecoders) {
      const oldest = this.live.values().next().value as Tracked;
      this.counts.connections.evicted++;
      this.close(oldest, null);
    }
    const tcp = key.proto === 6;
    const fromStart = this.options.fromStart || (tcp && this.options.startSeen(key.cookie));
    const decoder = new ConnectionDecoder({ transport: tcp ? 'tcp' : 'udp', fromStart, bufferCap: this.options.bufferCap });
    t = { decoder, key, cookie: key.cookie, endpoint: null, lastNs: 0, said: null };
    this.live.set(key.id, t);
    let ids = this.bySocket.get(key.cookie);
    if (!ids) this.bySocket.set(key.cookie, (ids = new Set()));
    ids.add(key.id);
    this.counts.connections.total++;
    return t;
  }

  /** tsNs null: evicted, closed at its last chunk's time (the decoder's own). */
  private close(t: Tracked, tsNs: number | null): void {
    this.live.delete(t.key.id);
    const ids = this.bySocket.get(t.cookie);
    ids?.delete(t.key.id);
    if (ids && ids.size === 0) this.bySocket.delete(t.cookie);
    for (const x of t.decoder.close(tsNs ?? t.lastNs)) this.emit(t, x);
    this.tally(t.decoder.status, t.decoder.plaintextStatus);
  }

  private tally(s: DecoderStatus, p: DecoderStatus | null): void {
    const c = this.counts.connections;
    if (p && p.exchanges > 0) this.counts.plaintext++;
    const decodedSomething = s.exchanges > 0 || (p !== null && p.exchanges > 0);
    if (decodedSomething) c.decoded++;
    // TLS after its handshake is opaque by design; so is a socket whose plaintext came from the hooks
    for (const layer of p ? [s, p] : [s]) {
      if (layer.state === 'unknown' || layer.state === 'undecodable' || layer.state === 'opaque') {
        if (layer === s && p && layer.state === 'opaque') continue;
        if (layer.state === 'unknown' && decodedSomething) continue;
        c[layer.state]++;
        this.reason(`${layer.state}${layer.protocol ? ` ${layer.protocol}` : ''}: ${layer.reason ?? 'no reason given'}`);
      }
    }
  }

  private reason(text: string): void {
    const r = this.counts.reasons;
    const key = r.has(text) || r.size < MAX_REASONS ? text : 'other reasons';
    r.set(key, (r.get(key) ?? 0) + 1);
  }

  private emit(t: Tracked, x: Exchange): void {
    this.counts.exchanges++;
    if (x.partial) this.counts.partial++;
    if (!t.said) t.said = saidName(x);
    const at = x.requestStartNs ?? x.responseStartNs ?? 0;
    if (!t.endpoint || (t.endpoint.service.direction === 'outbound' && !t.endpoint.name)) t.endpoint = this.endpointOf(t, at);
    this.options.onExchange({ pid: t.key.tgid, startTime: t.key.startTime, socket: t.cookie, endpoint: t.endpoint, exchange: x });
  }

  private endpointOf(t: Tracked, atNs: number): L7Endpoint {
    const service = this.options.serviceOf(t.key);
    if (service.direction === 'inbound') return { label: endpointLabel(service), service };
    const dns = this.options.dnsName(service.remoteAddr, atNs);
    if (dns) return { label: endpointLabel(service, dns), service, name: dns, nameSource: 'dns' };
    if (t.said) return { label: endpointLabel(service, t.said.name), service, name: t.said.name, nameSource: t.said.source };
    return { label: endpointLabel(service), service };
  }
}
