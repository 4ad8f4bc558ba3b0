// SPDX-License-Identifier: MIT
// attach in the report: the targets, the connections that were open before the attach, and the
// namespace view of processes that appeared later. Pure: the attach gathers the /proc facts beforehand.
import type { ProcNetSocket } from '../proc/procfs';
import type { AttachedProcess, ConnectionReport, ProcessReport, Target } from '../schema/report';

export type PreexistingSocket = ProcNetSocket & { pid: number };

export interface AttachFacts {
  targets: Target[];
  /** The processes taken at the attach, parents first. */
  attached: AttachedProcess[];
  /** --no-children: listed pids that had children at the attach, which were left out. */
  childrenLeftOut: Array<{ pid: number; children: number[] }>;
  /** Sockets the targets had open at the attach (/proc/PID/fd + /proc/PID/net). */
  preexisting: PreexistingSocket[];
  /** Namespace pid and netns (where not proctap's) of processes that appeared after the attach and still
   *  ran at its end, read then. */
  namespaces: Map<number, { nspid?: number; netns?: number }>;
}

/** Connections open before the attach: matched to traced flows by 5-tuple (in place), or listed without
 *  traffic (the rows returned, to append). A TCP one on a port the targets listened on was accepted. */
export function markPreexisting(connections: ConnectionReport[], sockets: PreexistingSocket[]): ConnectionReport[] {
  const key = (proto: string, la: string, lp: number, ra: string, rp: number) => `${proto} ${la}:${lp} ${ra}:${rp}`;
  const listening = new Set(sockets.filter((s) => s.proto === 'tcp' && s.state === 10).map((s) => s.localPort));
  const tcpRole = (localPort: number) => (listening.has(localPort) ? ('passive' as const) : ('unknown' as const));
  const rows = new Map<string, ConnectionReport>();
  for (const c of connections) rows.set(key(c.proto, c.localAddr, c.localPort, c.remoteAddr, c.remotePort), c);
  const added: ConnectionReport[] = [];
  for (const s of sockets) {
    if (s.proto === 'tcp' && (s.state === 10 || s.remotePort === 0)) continue; // listeners
    const row = rows.get(key(s.proto, s.localAddr, s.localPort, s.remoteAddr, s.remotePort));
    if (row) {
      row.preexisting = true;
      if (row.role === 'unknown') row.role = tcpRole(row.localPort);
      continue;
    }
    added.push({
      pid: s.pid,
      proto: s.proto,
      role: s.proto === 'tcp' ? tcpRole(s.localPort) : 'unknown',
      localAddr: s.localAddr,
      localPort: s.localPort,
      remoteAddr: s.remoteAddr,
      remotePort: s.remotePort,
      startOffsetMs: 0,
      durationMs: null,
      txBytes: 0,
      rxBytes: 0,
      txCalls: 0,
      rxCalls: 0,
      outcome: 'open',
      error: null,
      preexisting: true,
    });
  }
  return added;
}

/** Namespace pid and netns of processes that appeared after the attach and still ran at its end (in place). */
export function annotateNamespaces(processes: ProcessReport[], namespaces: AttachFacts['namespaces']): void {
  for (const p of processes) {
    if (p.startOffsetMs === null || p.exitOffsetMs !== null) continue; // targets: read at attach; gone: inherited
    const ns = namespaces.get(p.pid);
    if (ns?.nspid !== undefined) p.nspid = ns.nspid;
    if (ns?.netns !== undefined) p.netns = ns.netns;
  }
}

/** "pid 42 had 2 children at the attach (43, 44), not traced (--no-children)". */
export function childrenLeftOutNotes(left: AttachFacts['childrenLeftOut']): string[] {
  return left.map(({ pid, children }) => {
    const shown = children.length <= 8 ? children.join(', ') : `${children.slice(0, 8).join(', ')} and ${children.length - 8} more`;
    return `pid ${pid} had ${children.length} child process${children.length === 1 ? '' : 'es'} at the attach (${shown}), not traced (--no-children).`;
  });
}
