// SPDX-License-Identifier: MIT
// The one place that loads addon/build/Release/proctap.node; everything else imports from here.
import fs from 'node:fs';
import path from 'node:path';
import type { NativeModule } from './native';

export type {
  BpfObject,
  ConntrackEntry,
  ConntrackTuple,
  LiveCapture,
  LiveCaptureOptions,
  LiveCaptureStats,
  MapDump,
  NativeError,
  NativeModule,
  NetworkInterface,
  ProcConnector,
  RingBufferOptions,
} from './native';

/** Byte offsets of the fields of one proc connector record (PROC_RECORD_SIZE bytes, little-endian). */
export const PROC_RECORD_KIND = 0;
export const PROC_RECORD_PID = 4;
export const PROC_RECORD_TGID = 8;
export const PROC_RECORD_PARENT_PID = 12;
export const PROC_RECORD_PARENT_TGID = 16;
export const PROC_RECORD_EXIT_CODE = 20;
export const PROC_RECORD_EXIT_SIGNAL = 24;
export const PROC_RECORD_TIMESTAMP = 32;
export const PROC_RECORD_SIZE = 40;

/** Live capture batches: per packet u64 tsNs, u32 capLen, u32 origLen, then the bytes padded to 8. */
export const LIVE_PACKET_HEADER_SIZE = 16;

export const PROC_KIND = { fork: 1, exec: 2, exit: 3, overflow: 4 } as const;

// Compiled to dist/src/native/index.js: three levels below the repository root.
const ADDON_PATH = path.resolve(__dirname, '../../../addon/build/Release/proctap.node');

let cached: NativeModule | undefined;

export function loadNative(): NativeModule {
  if (cached) return cached;
  if (!fs.existsSync(ADDON_PATH)) {
    throw new Error(`proctap native addon not built: run 'make build' (looked for ${ADDON_PATH})`);
  }
  const native = require(ADDON_PATH) as NativeModule;
  if (native.PROC_RECORD_SIZE !== PROC_RECORD_SIZE) {
    throw new Error(`proctap native addon is stale: PROC_RECORD_SIZE ${native.PROC_RECORD_SIZE}, expected ${PROC_RECORD_SIZE}; run 'make build'`);
  }
  cached = native;
  return native;
}
