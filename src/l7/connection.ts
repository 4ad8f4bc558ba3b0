// SPDX-License-Identifier: MIT
// One traced connection: fed its chunks (any chunking, both directions interleaved) and its close,
// it classifies itself once from its first bytes and gives back the exchanges its protocol decoder
// finds. TLS plaintext (chunks with tls set) is a second layer with its own streams and its own
// classification: the socket layer sees the handshake, the plaintext layer what is said inside.
// Never throws: an internal error marks the layer undecodable with the message as its reason.
import { detect, type Detected } from './detect';
import { DnsDecoder } from './dns';
import { Http1Decoder } from './http1';
import { Http2Decoder } from './http2';
import { PostgresDecoder } from './postgres';
import { other, type DecoderSettings, type ProtocolContext, type ProtocolDecoder } from './protocol';
import { RedisDecoder } from './redis';
import { ByteStream } from './stream';
import { TlsDecoder } from './tls';
import type { DataChunk, DecoderOptions, DecoderState, DecoderStatus, Direction, Exchange, L7Protocol, Role } from './types';

export const DEFAULT_BUFFER_CAP = 64 * 1024;
export const DEFAULT_MAX_PENDING = 256;
/** Attached mid-stream: chunk starts tried per direction before the connection is unknown. */
export const MID_STREAM_TRIES = 16;
/** No exchange completed (half the chunks of a request/response connection): one shared, frozen list. */
const NO_EXCHANGES: Exchange[] = Object.freeze([]) as unknown as Exchange[];

class Layer {
  state: DecoderState = 'detecting';
  protocol: L7Protocol | null = null;
  reason: string | null = null;
  exchanges = 0;
  private decoder: ProtocolDecoder | null = null;
  private dnsUdp: DnsDecoder | null = null;
  private readonly streams: Record<Direction, ByteStream> = { tx: new ByteStream(), rx: new ByteStream() };
  private readonly verdict: Record<Direction, 'no' | null> = { tx: null, rx: null };
  private readonly tries: Record<Direction, number> = { tx: 0, rx: 0 };
  private readonly ctx: ProtocolContext;

  constructor(
    private readonly transport: 'tcp' | 'udp',
    private readonly fromStart: boolean,
    settings: DecoderSettings,
    tls: boolean,
    private readonly out: Exchange[],
  ) {
    const self = this;
    this.ctx = {
      streams: this.streams,
      settings,
      tls,
      get midStream() {
        return !self.fromStart || self.streams.tx.midStream || self.streams.rx.midStream;
      },
      emit: (x) => {
        this.exchanges++;
        this.out.push(x);
      },
      fail: (reason) => this.stop('undecodable', reason),
      opaque: (reason) => this.stop('opaque', reason),
    };
  }

  get role(): Role | null {
    return this.decoder?.role ?? this.dnsUdp?.role ?? null;
  }

  push(c: DataChunk): void {
    if (this.state !== 'detecting' && this.state !== 'decoding') return;
    if (this.transport === 'udp') return this.pushDatagram(c);
    const s = this.streams[c.direction];
    s.push(c);
    try {
      if (this.state === 'detecting') this.detectTcp(c.direction);
      if (this.state === 'decoding') this.decoder!.pump();
    } finally {
      s.settle(); // the chunk's bytes are the caller's: what is left of them is copied now
    }
  }

  close(tsNs: number): void {
    if (this.state === 'detecting') {
      this.stop('unknown', this.streams.tx.empty && this.streams.rx.empty ? 'no bytes seen' : 'closed before its protocol could be told');
      return;
    }
    if (this.state !== 'decoding' && this.state !== 'undecodable') return;
    this.decoder?.close(tsNs);
    this.dnsUdp?.close();
  }

  get buffered(): number {
    return this.streams.tx.buffered + this.streams.rx.buffered;
  }

  status(): DecoderStatus {
    return { state: this.state, protocol: this.protocol, role: this.role, reason: this.reason, exchanges: this.exchanges };
  }

  private stop(state: DecoderState, reason: string): void {
    if (this.state === 'unknown' || this.state === 'undecodable' || this.state === 'opaque') return;
    this.state = state;
    this.reason = reason;
    // Bytes held are of no more use.
    this.streams.tx.skipAll();
    this.streams.rx.skipAll();
  }

  private pushDatagram(c: DataChunk): void {
    if (this.state === 'detecting') {
      const d = detect(c.bytes, c.bytes.length < c.length, true, 'udp');
      if (d.match !== 'yes') {
        this.stop('unknown', 'the first datagram is not DNS');
        return;
      }
      this.protocol = 'dns';
      this.state = 'decoding';
      const role: Role = (c.direction === 'tx') === (d.sender === 'client') ? 'client' : 'server';
      this.dnsUdp = new DnsDecoder(this.ctx, role, true);
    }
    this.dnsUdp!.datagram(c.direction, c.bytes.length > c.length ? c.bytes.subarray(0, c.length) : c.bytes, c.length, c.tsNs);
  }

  private detectTcp(first: Direction): void {
    for (const dir of [first, other(first)]) {
      const s = this.streams[dir];
      if (this.verdict[dir] === 'no' || s.empty) continue;
      for (;;) {
        const mid = !this.fromStart || s.midStream || this.tries[dir] > 0 || s.holeAtHead() > 0;
        if (s.holeAtHead() > 0 && !s.skipToNextChunk()) break;
        const d = detect(s.head(), s.headFinal, mid, 'tcp');
        if (d.match === 'yes') return this.classify(d, dir);
        if (d.match === 'more') {
          if (s.buffered > this.ctx.settings.bufferCap) this.verdict[dir] = 'no';
          break;
        }
        // 'no': from the first byte that is final; mid-stream, try the next call's bytes.
        if (!mid || ++this.tries[dir] >= MID_STREAM_TRIES) {
          this.verdict[dir] = 'no';
          break;
        }
        if (!s.skipToNextChunk()) break;
      }
    }
    // A direction that said no keeps its bytes (the other side may still tell the protocol, and the
    // decoder then wants them) up to the buffer cap.
    const over = (d: Direction) => this.streams[d].buffered > this.ctx.settings.bufferCap;
    if (this.verdict.tx === 'no' && this.verdict.rx === 'no') this.stop('unknown', 'no supported protocol in the first bytes of either direction');
    else if ((this.verdict.tx === 'no' || over('tx')) && (this.verdict.rx === 'no' || over('rx'))) this.stop('unknown', 'no supported protocol in the first bytes');
    else if ((this.verdict.tx === 'no' && over('tx')) || (this.verdict.rx === 'no' && over('rx'))) this.stop('unknown', 'no supported protocol in the first bytes, and the other side silent');
  }

  private classify(d: Detected, dir: Direction): void {
    const role: Role = (dir === 'tx') === (d.sender === 'client') ? 'client' : 'server';
    this.protocol = d.protocol!;
    this.state = 'decoding';
    // A direction that said 'no' mid-stream dropped its bytes up to a call start already; the
    // decoder resynchronises from there.
    switch (d.protocol) {
      case 'http1':
        this.decoder = new Http1Decoder(this.ctx, role);
        break;
      case 'http2':
        this.decoder = new Http2Decoder(this.ctx, role);
        break;
      case 'tls':
        this.decoder = new TlsDecoder(this.ctx, role);
        break;
      case 'dns':
        this.decoder = new DnsDecoder(this.ctx, role, false);
        break;
      case 'redis':
        this.decoder = new RedisDecoder(this.ctx, role);
        break;
      case 'postgres':
        this.decoder = new PostgresDecoder(this.ctx, role, d.postgresStartup ?? false);
        break;
    }
  }
}

/**
 * The decoder of one connection (a TCP socket of one process, or a UDP flow). push() each chunk as it
 * comes, close() once; both return the exchanges they completed, in order.
 */
export class ConnectionDecoder {
  private readonly settings: DecoderSettings;
  private readonly socket: Layer;
  private plaintext: Layer | null = null;
  private readonly out: Exchange[] = [];
  private closed = false;

  constructor(private readonly options: DecoderOptions) {
    this.settings = {
      bufferCap: options.bufferCap ?? DEFAULT_BUFFER_CAP,
      keepQueryValues: options.keepQueryValues ?? false,
      maxPending: options.maxPending ?? DEFAULT_MAX_PENDING,
    };
    this.socket = new Layer(options.transport, options.fromStart ?? true, this.settings, false, this.out);
  }

  push(chunk: DataChunk): Exchange[] {
    if (this.closed) return NO_EXCHANGES;
    const layer = chunk.tls ? this.tlsLayer() : this.socket;
    // guard() inlined: no closure per chunk on the hot path
    try {
      layer.push(chunk);
    } catch (err) {
      failed(layer, err);
    }
    return this.drain();
  }

  /** The connection closed (or the trace ended): exchanges in flight are given with what they have. */
  close(tsNs = 0): Exchange[] {
    if (this.closed) return NO_EXCHANGES;
    this.closed = true;
    guard(this.socket, () => this.socket.close(tsNs));
    const p = this.plaintext;
    if (p) guard(p, () => p.close(tsNs));
    return this.drain();
  }

  /** Where the socket's bytes stand. */
  get status(): DecoderStatus {
    return this.socket.status();
  }

  /** Copied bytes held for messages in progress (both layers, both directions): the memory a connection costs. */
  get bufferedBytes(): number {
    return this.socket.buffered + (this.plaintext?.buffered ?? 0);
  }

  /** Where the TLS plaintext stands (null when none came). */
  get plaintextStatus(): DecoderStatus | null {
    return this.plaintext?.status() ?? null;
  }

  private tlsLayer(): Layer {
    this.plaintext ??= new Layer('tcp', this.options.fromStart ?? true, this.settings, true, this.out);
    return this.plaintext;
  }

  private drain(): Exchange[] {
    return this.out.length === 0 ? NO_EXCHANGES : this.out.splice(0, this.out.length);
  }
}

function guard(layer: Layer, f: () => void): void {
  try {
    f();
  } catch (err) {
    failed(layer, err);
  }
}

function failed(layer: Layer, err: unknown): void {
  layer.state = 'undecodable';
  layer.reason = `internal error: ${err instanceof Error ? err.message : String(err)}`;
}
