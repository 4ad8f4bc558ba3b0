// SPDX-License-Identifier: MIT
// --events FILE|-: one JSON line per record as it arrives (lifecycle, interval flow updates, and with
// --detail every send/recv), for jq and log shippers. Packet bytes are not included.
import * as fs from 'node:fs';
import type { TraceRecord } from '../trace/records';
import { protoName } from '../util/net';

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
  }
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
      pending += `${JSON.stringify(eventOf(record, originNs()))}\n`;
      if (pending.length > 65536) flush();
    },
    close() {
      clearInterval(timer);
      flush();
      if (fd !== 1) fs.closeSync(fd);
    },
  };
}
