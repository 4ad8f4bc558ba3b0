// SPDX-License-Identifier: MIT
// The L7 layer's entry points: a ConnectionDecoder per connection (chunks in, exchanges out). The
// summaries and patterns made of exchanges are analysis/l7-aggregate.ts and analysis/l7-patterns.ts.
// docs/l7.md describes them.
export { ConnectionDecoder, DEFAULT_BUFFER_CAP, DEFAULT_MAX_PENDING, MID_STREAM_TRIES } from './connection';
export { normalizeQuery } from './sql';
export { normalizePath } from './http1';
export { redisCommandName } from './redis';
export type * from './types';
