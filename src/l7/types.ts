// SPDX-License-Identifier: MIT
// The L7 layer's data shapes: what the decoders are fed (DataChunk, one per send/recv call, as
// struct data_record in bpf/proctap.h carries it) and what they give back (Exchange, one per
// request/response pair). docs/l7.md describes every field.

export type Direction = 'tx' | 'rx';

/** The head of the bytes one call moved on a traced connection. */
export interface DataChunk {
  /** As seen from the traced process: tx = it sent, rx = it received. */
  direction: Direction;
  /** CLOCK_MONOTONIC ns of the call. */
  tsNs: number;
  /** Stream position: bytes of this connection and direction before this call (TLS plaintext counts its own). */
  offset: number;
  /** Bytes the call moved. */
  length: number;
  /** The first bytes of them: bytes.length <= length (0 when not copied, e.g. sendfile). */
  bytes: Uint8Array;
  /** Plaintext from a TLS library (uprobes), not the socket. */
  tls?: boolean;
}

export type Transport = 'tcp' | 'udp';

/** The protocol a connection was classified as (once, from its first bytes). */
export type L7Protocol = 'http1' | 'http2' | 'tls' | 'dns' | 'redis' | 'postgres';
/** An exchange's protocol: gRPC is HTTP/2 with an application/grpc content type. */
export type ExchangeProtocol = L7Protocol | 'grpc';

/** The traced process's part, told from the bytes (who sent the request). */
export type Role = 'client' | 'server';

/**
 * Where a connection's decoding stands.
 * - detecting: not enough bytes yet to tell;
 * - decoding: classified, exchanges are being decoded;
 * - unknown: the first bytes match no supported protocol (never guessed);
 * - undecodable: classified, then the stream could not be followed (see `reason`); exchanges emitted
 *   before that stand;
 * - opaque: classified, and nothing more is to be decoded on purpose (TLS after its handshake, an HTTP
 *   connection upgraded to another protocol, a PostgreSQL connection that switched to TLS).
 */
export type DecoderState = 'detecting' | 'decoding' | 'unknown' | 'undecodable' | 'opaque';

export interface HttpDetail {
  kind: 'http';
  method: string | null;
  /** Path, query values replaced by '?' unless the decoder was told to keep them. */
  path: string | null;
  /** Host header, or :authority in HTTP/2. */
  host: string | null;
  /** Final status (an interim 1xx is not kept, except 101). */
  status: number | null;
  /** gRPC status (trailers, or headers of a trailers-only answer). */
  grpcStatus?: number | null;
  /** grpc-message, when the status is not OK (cut at 200 characters). */
  grpcMessage?: string;
  /** HTTP/2 stream id. */
  streamId?: number;
  contentType?: string | null;
}

export interface DnsDetail {
  kind: 'dns';
  id: number;
  /** Question name, lower case, no trailing dot. */
  name: string | null;
  /** Question type (1 = A, 28 = AAAA, ...) and its mnemonic. */
  type: number | null;
  typeName: string | null;
  /** Response code (0 = NOERROR, 3 = NXDOMAIN, ...) and its mnemonic. */
  rcode: number | null;
  rcodeName: string | null;
  /** ANCOUNT of the response. */
  answers: number | null;
  truncated: boolean;
}

export interface RedisDetail {
  kind: 'redis';
  /** The command as redis names it in INFO commandstats: "get", "config|get". */
  command: string | null;
  /** Arguments, command name included. */
  args: number | null;
  /** Reply type byte ('+', '-', ':', '$', '*', ... RESP3 too), or null when no reply was seen. */
  replyType: string | null;
  /** Error reply: its first word ("ERR", "WRONGTYPE", "MOVED"). */
  error: string | null;
  inline: boolean;
}

export interface PostgresDetail {
  kind: 'postgres';
  /** simple: a Query message; extended: Parse/Bind/Execute; prepare: Parse/Describe without Execute;
   *  startup: the startup message and authentication up to the first ReadyForQuery. */
  mode: 'simple' | 'extended' | 'prepare' | 'startup' | 'function';
  /** Query text as sent (cut at 1000 characters), null when not seen. */
  query: string | null;
  /** Literals replaced by $n, whitespace folded: equal for "the same query". */
  normalized: string | null;
  /** CommandComplete tags ("SELECT 3", "INSERT 0 1"), in order. */
  tags: string[];
  /** Rows as the tags count them (SELECT, INSERT, UPDATE, DELETE, ...), summed. */
  rows: number | null;
  /** ErrorResponse: severity (non-localised when given) and SQLSTATE. */
  errorSeverity: string | null;
  errorCode: string | null;
  /** startup: user and database from the startup message. */
  user?: string | null;
  database?: string | null;
}

export interface TlsDetail {
  kind: 'tls';
  sni: string | null;
  /** ALPN protocols the client offered, and the one the server chose. */
  alpnOffered: string[];
  alpn: string | null;
  /** ClientHello legacy_version and supported_versions (e.g. "TLS1.2", "TLS1.3"). */
  clientVersion: string | null;
  supportedVersions: string[];
  /** The version the ServerHello chose (supported_versions, else legacy_version). */
  version: string | null;
  /** CH first byte → first application_data record the client sends (ns): the handshake as the
   *  client sees it complete. null when not seen. */
  handshakeNs: number | null;
  /** An alert record seen before the handshake completed: "level/description" when in clear. */
  alert: string | null;
  /** The ServerHello was a HelloRetryRequest first. */
  helloRetry: boolean;
}

export type ExchangeDetail = HttpDetail | DnsDetail | RedisDetail | PostgresDetail | TlsDetail;

/** One request and its response, as one connection carried them. */
export interface Exchange {
  protocol: ExchangeProtocol;
  role: Role;
  /** What was asked, as the summaries group it: "GET /users", "config|get", a normalised query,
   *  "A example.com", "handshake". */
  operation: string;
  /** The answer in one word: "200", "NOERROR", "OK", "ERR", "SELECT", "42P01", "TLS1.3"; '' when no response. */
  status: string;
  /** The answer says it failed: HTTP 5xx, gRPC status != 0, DNS rcode != 0, a Redis error reply,
   *  a PostgreSQL ErrorResponse, a TLS alert. */
  error: boolean;
  /** Name of the other end as the bytes say it: HTTP Host / :authority, TLS SNI, the DNS question. */
  host: string | null;
  /** Bytes of the request and of the response as the stream carried them (headers + body, framing
   *  included: chunk lines, HTTP/2 frame headers, length prefixes). Exact even when the bytes were
   *  not copied, as long as the framing was followed. */
  requestBytes: number;
  responseBytes: number;
  /** CLOCK_MONOTONIC ns of the calls that moved the request's first and last byte and the response's
   *  first and last byte; null when that part was not seen. */
  requestStartNs: number | null;
  requestEndNs: number | null;
  responseStartNs: number | null;
  responseEndNs: number | null;
  /** Latency: request's first byte → response's first byte, and → response's last byte (ns). */
  latencyFirstNs: number | null;
  latencyLastNs: number | null;
  /** Plaintext from a TLS library. */
  tls: boolean;
  /** Some part was not seen or could not be decoded (a gap, bytes past the copy limit inside headers,
   *  a resynchronisation): the figures are what was seen. */
  partial: boolean;
  /** Why it is partial, or what is missing: 'no-request' (the response came first: mid-stream),
   *  'no-response' (the connection closed or was reset before it), 'headers-cut', 'gap', 'resync',
   *  'hpack-unavailable', ... */
  notes: string[];
  detail: ExchangeDetail;
}

export interface DecoderOptions {
  transport: Transport;
  /** The connection was seen from its first byte (run; accept/connect seen). false: attached
   *  mid-stream, the first chunk of each direction may start anywhere. Default true. A first chunk at
   *  offset > 0 counts as mid-stream either way. */
  fromStart?: boolean;
  /** Copied bytes a direction may hold while a message is incomplete (default 64 KiB). */
  bufferCap?: number;
  /** Keep query values in HTTP paths (default false: "/a?x=?&y=?"). */
  keepQueryValues?: boolean;
  /** Pipelined requests (or DNS queries) waiting for their response (default 256): past it the
   *  oldest is given up as 'no-response'. */
  maxPending?: number;
}

export interface DecoderStatus {
  state: DecoderState;
  /** Set once classified. */
  protocol: L7Protocol | null;
  /** The traced process's role, once told. */
  role: Role | null;
  /** Why unknown, undecodable or opaque. */
  reason: string | null;
  /** Exchanges emitted so far. */
  exchanges: number;
}
