// SPDX-License-Identifier: MIT
// The JSON report's `l7` section (--l7): what the traced processes said, summarised per process,
// endpoint and operation (docs/schema.md, docs/l7.md "Report").

/** Latency quantiles of a row (ms): nearest-rank over the values kept, a 1 % sketch past 512 of them. */
export interface L7LatencyReport {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The quantiles are exact (all values kept); false: from the sketch, within 1 %. */
  exact: boolean;
}

/** One summary row: exchanges of one process with one endpoint, per protocol, role, operation (and
 *  status for HTTP, gRPC, DNS, TLS; Redis and PostgreSQL rows count their errors in the row). */
export interface L7RowReport {
  /** null on an "(other)" row (keys past the cardinality cap, every process). */
  pid: number | null;
  /** "api.test:443", "127.0.0.1:6379", "127.0.0.1 → :80" (clients from 127.0.0.1 of our port 80); "*" on "(other)" rows. */
  endpoint: string;
  proto?: 'tcp' | 'udp';
  remoteAddr?: string;
  /** The server's port (outbound); 0 for inbound rows, whose `localPort` is the port they connected to. */
  remotePort?: number;
  direction?: 'inbound';
  localPort?: number;
  /** The name in `endpoint`, and where it came from: a DNS answer the process received, the TLS SNI or
   *  the HTTP Host (:authority) it sent. */
  remoteName?: string;
  nameSource?: 'dns' | 'sni' | 'host';
  /** http1, http2, grpc, tls, dns, redis, postgres. */
  protocol: string;
  /** The traced process's part: client (it sent the requests) or server. */
  role: 'client' | 'server' | null;
  /** What was asked: "GET /users?id=?", "get", a normalised query, "A api.test", "handshake". */
  operation: string;
  /** HTTP (1, 2, gRPC): the request's method and path (query values as '?'). */
  method?: string;
  path?: string;
  /** Redis: the command as INFO commandstats names it ("get", "config|get"). */
  command?: string;
  /** PostgreSQL: the normalised query. */
  query?: string;
  /** HTTP status, gRPC status name, DNS rcode, TLS version; '' on Redis/PostgreSQL rows and when no answer came. */
  status: string;
  count: number;
  /** HTTP 5xx, gRPC status != 0, DNS rcode != 0, Redis error replies, PostgreSQL ErrorResponses, TLS alerts. */
  errors: number;
  /** Exchanges with a part not seen (mid-stream, past the copy limit, a gap). */
  partial: number;
  /** Exchanges decoded from TLS plaintext (the library hooks). */
  tls: number;
  requestBytes: number;
  responseBytes: number;
  /** Request's first byte → response's first byte, and → response's last byte. */
  latencyFirst: L7LatencyReport | null;
  latencyLast: L7LatencyReport | null;
  /** An "(other)" row: `folded` keys went into it. */
  other?: true;
  folded?: number;
}

/** An L7 pattern (docs/l7.md "Patterns"): l7-periodic, l7-errors, l7-n-plus-one. */
export interface L7PatternReport {
  kind: 'l7-periodic' | 'l7-errors' | 'l7-n-plus-one';
  pids: number[];
  endpoint: string;
  protocol: string;
  evidence: Record<string, number | string>;
  summary: string;
}

export interface L7Report {
  /** Bytes copied per call (--l7-snaplen). */
  snaplen: number;
  /** Exchanges decoded (every row's count summed) and of them partial. */
  exchanges: number;
  partial: number;
  /** Busiest rows first, then one "(other)" row per protocol when keys were folded. */
  rows: L7RowReport[];
  /** Keys without a row of their own (in the "(other)" rows). */
  foldedKeys: number;
  patterns: L7PatternReport[];
  /** Connections (TCP sockets per process, UDP flows) whose bytes were looked at, by how they ended. */
  connections: {
    total: number;
    /** At least one exchange decoded. */
    decoded: number;
    /** No supported protocol in their first bytes. */
    unknown: number;
    /** Classified, then the stream could not be followed (exchanges before that stand). */
    undecodable: number;
    /** Nothing more to decode by design: TLS after its handshake with no plaintext hooked, an upgrade. */
    opaque: number;
    /** Closed early: more connections alive than the decoder cap. */
    evicted: number;
    /** TLS connections whose plaintext (library hooks) was decoded. */
    tlsPlaintext: number;
  };
  /** Data records: decoded, missing bytes (not copied, copy failed, no buffer), cut at the copy limit,
   *  lost in the kernel (ring buffer full), TLS plaintext without a known socket. */
  records: { total: number; tls: number; notCopied: number; copyFailed: number; noBuffer: number; cut: number; lost: number; tlsWithoutSocket: number };
  /** What was not seen or not decoded, one sentence each. */
  notes: string[];
}
