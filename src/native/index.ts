// SPDX-License-Identifier: MIT
// The one place that loads addon/build/Release/proctap.node; everything else imports from here.
import fs from 'node:fs';
import path from 'node:path';
import type { NativeModule } from './native';
import { proc_event_record } from './layout.generated';

export type {
  BpfObject,
  ConntrackEntry,
  ConntrackTuple,
  LibpcapCapture,
  LibpcapCaptureOptions,
  LibpcapCaptureStats,
  MapDump,
  NativeError,
  NativeModule,
  NetworkInterface,
  PacketFilter,
  ProcConnector,
  RingBufferOptions,
} from './native';

// Compiled to dist/src/native/index.js: three levels below the repository root.
const ADDON_PATH = path.resolve(__dirname, '../../../addon/build/Release/proctap.node');

let cached: NativeModule | undefined;

export function loadNative(): NativeModule {
  if (cached) return cached;
  if (!fs.existsSync(ADDON_PATH)) {
    throw new Error(`proctap native addon not built: run 'make build' (looked for ${ADDON_PATH})`);
  }
  const native = require(ADDON_PATH) as NativeModule;
  if (native.PROC_RECORD_SIZE !== proc_event_record.size) {
    throw new Error(`proctap native addon is stale: PROC_RECORD_SIZE ${native.PROC_RECORD_SIZE}, expected ${proc_event_record.size}; run 'make build'`);
  }
  cached = native;
  return native;
}
