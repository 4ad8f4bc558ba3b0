// SPDX-License-Identifier: MIT
// Decoding of the proc connector's batches (addon/batch_records.h: struct proc_event_record, offsets
// generated into layout.generated.ts). Pure: bytes in, events out.
import * as L from '../native/layout.generated';

export const PROC_EVENT_SIZE = L.proc_event_record.size;

export type ProcEvent =
  | { kind: 'fork'; pid: number; tgid: number; parentPid: number; parentTgid: number; tsNs: number }
  | { kind: 'exec'; pid: number; tgid: number; tsNs: number }
  | { kind: 'exit'; pid: number; tgid: number; parentPid: number; parentTgid: number; waitStatus: number; exitSignal: number; tsNs: number }
  /** The connector's socket overflowed (ENOBUFS): events were lost. */
  | { kind: 'overflow'; tsNs: number };

export function decodeProcEvent(view: DataView, at: number): ProcEvent | null {
  const kind = view.getUint32(at + L.proc_event_record.kind, true);
  const pid = view.getUint32(at + L.proc_event_record.pid, true);
  const tgid = view.getUint32(at + L.proc_event_record.tgid, true);
  const parentPid = view.getUint32(at + L.proc_event_record.parent_pid, true);
  const parentTgid = view.getUint32(at + L.proc_event_record.parent_tgid, true);
  const tsNs = Number(view.getBigUint64(at + L.proc_event_record.timestamp_ns, true));
  switch (kind) {
    case L.PROC_EVENT_KIND_FORK:
      return { kind: 'fork', pid, tgid, parentPid, parentTgid, tsNs };
    case L.PROC_EVENT_KIND_EXEC:
      return { kind: 'exec', pid, tgid, tsNs };
    case L.PROC_EVENT_KIND_EXIT:
      return {
        kind: 'exit',
        pid,
        tgid,
        parentPid,
        parentTgid,
        waitStatus: view.getUint32(at + L.proc_event_record.exit_code, true),
        exitSignal: view.getUint32(at + L.proc_event_record.exit_signal, true),
        tsNs,
      };
    case L.PROC_EVENT_KIND_OVERFLOW:
      return { kind: 'overflow', tsNs };
    default:
      return null;
  }
}

/** Every event of one batch, in order. */
export function decodeProcEvents(batch: ArrayBuffer): ProcEvent[] {
  const view = new DataView(batch);
  const events: ProcEvent[] = [];
  for (let at = 0; at + PROC_EVENT_SIZE <= batch.byteLength; at += PROC_EVENT_SIZE) {
    const event = decodeProcEvent(view, at);
    if (event) events.push(event);
  }
  return events;
}
