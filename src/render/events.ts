// SPDX-License-Identifier: MIT
// --events FILE|-: one JSON line per record as it arrives (lifecycle, interval flow updates, and with
// --detail every send/recv; L7 data records with their bytes in base64), for jq and log shippers. Packet
// bytes are not included.
import * as fs from 'node:fs';
import type { FlowKey, TraceRecord } from '../kernel/records';
import { protoName } from '../util/net';
import { CALL_LINE_MAX_FIXED, writeCallLine } from './ndjson';
import type { L7Event } from '../model/l7';
import { exchangeEvent } from './l7-events';

/** The NDJSON form of a record; `tMs` is ms since `originNs`. */
export function eventOf(record: TraceRecord, originNs: number): Record<string, unknown> {
  const base = {
    type: record.type,
    tMs: Math.round((record.tsNs - originNs) / 1000) / 1000,
    pid: record.tgid,
    // with pid, the process's identity across PID reuse (ProcessReport.startTimeNs)
    ...(record.startTime ? { startTimeNs: Number(record.startTime) } : {}),
  };
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
    case 'dns':
      return { ...base, socket: record.cookie.toString(), length: record.originalLength };
    case 'data': {
      const k = record.key;
      return {
        ...base,
        socket: k.cookie.toString(),
        proto: protoName(k.proto),
        remoteAddr: k.remoteAddr,
        remotePort: k.remotePort,
        tid: record.tid,
        direction: record.direction,
        source: record.source,
        offset: record.offset,
        length: record.length,
        kernelClass: record.kernelClass,
        flags: record.flags,
        // the bytes as base64: a third bigger than raw, half the size of hex
        base64: Buffer.from(record.bytes.buffer, record.bytes.byteOffset, record.bytes.byteLength).toString('base64'),
      };
    }
  }
}

/** `"socket":…,"remotePort":…` of a flow key, made once per key object (detail mode writes it per call). */
const flowFields = new WeakMap<FlowKey, string>();
/** The same preceded by the key's `"startTimeNs":…,`, as UTF-8: the stream's byte-level fast path. */
const flowFieldBytes = new WeakMap<FlowKey, Buffer>();

function flowFieldBytesOf(key: FlowKey): Buffer {
  let bytes = flowFieldBytes.get(key);
  if (bytes === undefined) {
    bytes = Buffer.from(startTimeField(key.startTime) + flowFieldsOf(key));
    flowFieldBytes.set(key, bytes);
  }
  return bytes;
}

const startTimeField = (startTime: bigint) => (startTime ? `"startTimeNs":${Number(startTime)},` : '');

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
  return `{"type":"call","tMs":${tMs},"pid":${record.tgid},${startTimeField(record.startTime)}${flowFieldsOf(record.key)},"tid":${record.tid},"direction":"${record.direction}","bytes":${record.bytes}}`;
}

export interface EventStream {
  /** Throws the stream's write error (then and on every later call): the caller stops the trace. */
  write(record: TraceRecord): void;
  /** A decoded exchange (--l7), as a `"type":"exchange"` line; throws like write(). */
  writeExchange(event: L7Event): void;
  /** Writes what is buffered (after every ring-buffer batch: a reader following the file sees records
   *  within one poll); throws like write(). */
  flush(): void;
  /** Flushes and closes; throws the write error if there was one. */
  close(): void;
}

/** Bytes buffered before a write(2): flushed when full, on flush() (every ring-buffer batch) and at close. */
export const EVENT_BUFFER_BYTES = 256 * 1024;

/** Buffered NDJSON writer to an open file descriptor (1 for stdout), flushed when its buffer is full, on flush()
 *  and at close. A write that fails (ENOSPC) cuts a regular file back to its last complete line.
 *  `extraFields` adds fields to a record's line (the container of a fork or exec). */
export function openEventStream(
  fd: number,
  originNs: () => number,
  label = fd === 1 ? 'standard output' : `fd ${fd}`,
  extraFields?: (record: TraceRecord) => Record<string, unknown> | undefined,
): EventStream {
  // Lines are written into one buffer as bytes (detail mode: straight from the record's numbers).
  const buf = Buffer.allocUnsafe(EVENT_BUFFER_BYTES);
  let pos = 0;
  let failure: Error | null = null;
  const regular = (() => {
    try {
      return fs.fstatSync(fd).isFile();
    } catch {
      return false;
    }
  })();
  let committed = regular ? fs.fstatSync(fd).size : 0;
  const writeOut = (bytes: Uint8Array) => {
    try {
      // a regular file at explicit positions: after a cut-back nothing lands past its end
      for (let at = 0; at < bytes.length; ) at += fs.writeSync(fd, bytes, at, bytes.length - at, regular ? committed + at : null);
      committed += bytes.length;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (regular) {
        try {
          fs.ftruncateSync(fd, committed);
        } catch {
          /* the write's error is the one to report */
        }
      }
      failure = new Error(`cannot write the event stream to ${label}: ${errnoText(err)}${code ? ` (${code})` : ''}`);
    }
  };
  const flush = () => {
    if (pos === 0 || failure) return;
    const bytes = buf.subarray(0, pos);
    pos = 0;
    writeOut(bytes);
  };
  /** Room for `n` more bytes (flushing first if needed); false when a line is longer than the buffer. */
  const room = (n: number): boolean => {
    if (pos + n > buf.length) flush();
    return n <= buf.length;
  };
  const writeText = (line: string) => {
    const n = Buffer.byteLength(line);
    if (room(n)) pos += buf.write(line, pos);
    else if (!failure) writeOut(Buffer.from(line));
    if (failure) throw failure;
  };
  return {
    write(record) {
      if (failure) throw failure;
      if (record.type === 'call' && record.startTime === record.key.startTime) {
        const fragment = flowFieldBytesOf(record.key);
        if (room(CALL_LINE_MAX_FIXED + fragment.length)) {
          const us = Math.round((record.tsNs - originNs()) / 1000);
          pos = writeCallLine(buf, pos, us, record.tgid, fragment, record.tid, record.direction, record.bytes);
          if (failure) throw failure;
          return;
        }
      }
      const extra = extraFields?.(record);
      writeText(`${extra ? JSON.stringify({ ...eventOf(record, originNs()), ...extra }) : eventLine(record, originNs())}\n`);
    },
    writeExchange(event) {
      if (failure) throw failure;
      writeText(`${JSON.stringify(exchangeEvent(event, originNs()))}\n`);
    },
    flush() {
      flush();
      if (failure) throw failure;
    },
    close() {
      flush();
      if (fd !== 1) fs.closeSync(fd);
      if (failure) throw failure;
    },
  };
}

/** "no space left on device" from an errno error (Node's message without its code prefix and syscall). */
export function errnoText(err: unknown): string {
  const message = (err as Error).message ?? String(err);
  return message.replace(/^[A-Z]+: /, '').split(',')[0];
}
