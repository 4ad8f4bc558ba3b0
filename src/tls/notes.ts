// SPDX-License-Identifier: MIT
// The report's notes about TLS, pure: which processes used a TLS library whose plaintext proctap could
// not see, plaintext that could not be tied to a connection, and whether the capture decrypts itself.

export interface TlsNoteFacts {
  mode: 'run' | 'attach';
  /** Uprobes cannot be attached on this system (why). */
  unavailable: string | null;
  /** Processes that mapped a TLS library proctap does not hook (or failed to hook). */
  unhooked: Array<{ pid: number; comm: string; library: string; reason: string }>;
  /** Processes that mapped a TLS library at all, hooked or not. */
  tlsProcesses: number;
  /** TLS data records, and those that arrived without a socket. */
  dataRecords: number;
  unboundRecords: number;
  /** The capture, if any: its format, and whether a key log channel fed it (run -o). */
  capture: { format: 'pcapng' | 'pcap'; keyLog: boolean } | null;
}

const MAX_LISTED = 5;

function processList(ps: Array<{ pid: number; comm: string }>): string {
  const listed = ps.slice(0, MAX_LISTED).map((p) => `pid ${p.pid} (${p.comm})`);
  const more = ps.length > MAX_LISTED ? ` and ${ps.length - MAX_LISTED} more` : '';
  return `${listed.join(', ')}${more}`;
}

export function tlsNotes(f: TlsNoteFacts): string[] {
  const notes: string[] = [];
  if (f.unavailable !== null) notes.push(`TLS plaintext not captured: uprobes cannot be attached here (${f.unavailable}).`);
  const groups = new Map<string, { library: string; reason: string; processes: Array<{ pid: number; comm: string }> }>();
  for (const u of f.unhooked) {
    const key = `${u.library}\0${u.reason}`;
    const group = groups.get(key) ?? { library: u.library, reason: u.reason, processes: [] };
    if (!group.processes.some((p) => p.pid === u.pid)) group.processes.push({ pid: u.pid, comm: u.comm });
    groups.set(key, group);
  }
  for (const g of groups.values()) {
    if (f.unavailable !== null && g.reason.endsWith(f.unavailable)) continue;
    const ps = g.processes.sort((a, b) => a.pid - b.pid);
    notes.push(`TLS plaintext not captured for ${processList(ps)}: ${ps.length === 1 ? 'it uses' : 'they use'} ${g.library} (${g.reason}).`);
  }
  if (f.unboundRecords > 0) {
    notes.push(
      `${f.unboundRecords} of ${f.dataRecords} TLS plaintext records are not tied to a connection: the library did its socket I/O outside its read/write calls (memory BIOs, as Python's asyncio does).`,
    );
  }
  if (f.capture && f.tlsProcesses > 0) {
    if (f.mode === 'attach') {
      notes.push('The capture stays encrypted: attach cannot hand a TLS key log to processes that are already running (their TLS plaintext is in the trace\'s TLS data records instead).');
    } else if (f.capture.format === 'pcap') {
      notes.push('The capture is classic pcap, which has no place for TLS secrets: it stays encrypted (pcapng, the default, carries the key log and decrypts itself).');
    } else if (!f.capture.keyLog) {
      notes.push('The capture stays encrypted: no TLS key log was handed to the command (--no-tls-keylog).');
    }
  }
  return notes;
}
