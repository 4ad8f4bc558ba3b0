// SPDX-License-Identifier: MIT
// --events FILE|-: one JSON line per record as it arrives (lifecycle, interval flow updates, and with
// --detail every send/recv), for jq and log shippers. Packet bytes are not included.
import * as fs from 'node:fs';
import type { FlowKey, TraceRecord } from '../trace/records';
import { protoName } from '../util/net';

/** The NDJSON form of a record; `tMs` is ms since `originNs`. */
export function eventOf(record: TraceRecord, originNs: number): Record<string, unknown> {
  const base = { type: record.type, tMs: Math.round((record.tsNs - originNs) / 1000) / 1000, pid: record.tgid };
  switch (record.type) {
    case 'fork':
      return { ...base, ppid: record.ppid, comm: record.comm };
    case 'exec':
      return { ...base, ppid: record.ppid, comm: record.comm, filename: record.filename, argv: record.argv };
    case 'exit':
      return { ...base, waitStatus: record.waitStatus };
    case 'flow':
    case 'call': {
      const k = record.key;
      const flow = { socket: k.cookie.toString(), proto: protoName(k.proto), remoteAddr: k.remoteAddr, remotePort: k.remotePort };
      if (record.type === 'call') return { ...base, ...flow, tid: record.tid, direction: record.direction, bytes: record.bytes };
      return { ...base, type: record.isNew ? 'flowNew' : 'flowUpdate', ...flow, localAddr: record.localAddr, localPort: record.localPort, ...record.counters };
    }
    case 'sockState':
      return {
        ...base,
        socket: record.cookie.toString(),
        oldState: record.oldState,
        newState: record.newState,
        error: record.error,
        localAddr: record.localAddr,
        localPort: record.localPort,
        remoteAddr: record.remoteAddr,
        remotePort: record.remotePort,
      };
    case 'sockRelease':
      return { ...base, socket: record.cookie.toString() };
    case 'packet':
      return { ...base, socket: record.cookie.toString(), direction: record.direction, length: record.originalLength };
  }
}

/** `"socket":…,"remotePort":…` of a flow key, made once per key object (detail mode writes it per call). */
const flowFields = new WeakMap<FlowKey, string>();

function flowFieldsOf(key: FlowKey): string {
  let fields = flowFields.get(key);
  if (fields === undefined) {
    const json = JSON.stringify({ socket: key.cookie.toString(), proto: protoName(key.proto), remoteAddr: key.remoteAddr, remotePort: key.remotePort });
    fields = json.slice(1, -1);
    flowFields.set(key, fields);
  }
  return fields;
}

/** The NDJSON line of a record, without the newline: JSON.stringify(eventOf(...)), with a fast path for
 *  the per-call records of detail mode (no intermediate objects; same text, same key order). */
export function eventLine(record: TraceRecord, originNs: number): string {
  if (record.type !== 'call') return JSON.stringify(eventOf(record, originNs));
  const tMs = Math.round((record.tsNs - originNs) / 1000) / 1000;
  return `{"type":"call","tMs":${tMs},"pid":${record.tgid},${flowFieldsOf(record.key)},"tid":${record.tid},"direction":"${record.direction}","bytes":${record.bytes}}`;
}

export interface EventStream {
  write(record: TraceRecord): void;
  close(): void;
}

/** Buffered NDJSON writer to an open file descriptor (1 for stdout), flushed every 64 KiB, every 200 ms
 *  and at close. */
export function openEventStream(fd: number, originNs: () => number): EventStream {
  let pending = '';
  const flush = () => {
    if (!pending) return;
    fs.writeSync(fd, pending);
    pending = '';
  };
  // a reader following the stream sees records within 200 ms
  const timer = setInterval(flush, 200);
  timer.unref();
  return {
    write(record) {
      pending += `${eventLine(record, originNs())}\n`;
      if (pending.length > 65536) flush();
    },
    close() {
      clearInterval(timer);
      flush();
      if (fd !== 1) fs.closeSync(fd);
    },
  };
}
