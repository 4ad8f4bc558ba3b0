// SPDX-License-Identifier: MIT
// The L7 layer's entry points: a ConnectionDecoder per connection (chunks in, exchanges out), an
// L7Aggregator for summaries, detectL7Patterns for the patterns. docs/l7.md describes them.
export { ConnectionDecoder, DEFAULT_BUFFER_CAP, DEFAULT_MAX_PENDING, MID_STREAM_TRIES } from './connection';
export { L7Aggregator, type AggregatorOptions, type L7Evidence, type L7Record, type L7Summary, type L7SummaryRow, type TrailEntry } from './aggregate';
export { ALPHA as LATENCY_SKETCH_ALPHA, LatencyStats, type LatencySummary } from './latency';
export { detectL7Patterns, BURST_MAX_GAP_MS, L7_ERRORS_MIN_RATIO, L7_ERRORS_MIN_REQUESTS, NPLUS1_MIN_REPEATS, type L7Pattern, type L7PatternKind } from './patterns';
export { normalizeQuery } from './sql';
export { normalizePath } from './http1';
export { redisCommandName } from './redis';
export type * from './types';
