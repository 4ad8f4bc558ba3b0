// SPDX-License-Identifier: MIT
// The rows of the terminal's process table: the process tree, with the processes that moved no byte
// folded into one line under their parent (unless every process is asked for), and the report's
// folded process groups under theirs. Pure: a Report's processes in, rows out.
import type { FoldedProcesses, ProcessReport } from '../schema/report';

export type ProcessRow =
  | { kind: 'process'; proc: ProcessReport; prefix: string }
  | { kind: 'quiet'; count: number; comms: Array<[string, number]>; prefix: string }
  | { kind: 'group'; group: FoldedProcesses; prefix: string };

const quiet = (p: ProcessReport) =>
  p.tcp.txBytes + p.tcp.rxBytes + p.tcp.txCalls + p.tcp.rxCalls + p.udp.txBytes + p.udp.rxBytes + p.udp.txCalls + p.udp.rxCalls === 0 &&
  p.packets.txPackets + p.packets.rxPackets === 0;

function sortByStart(processes: ProcessReport[]): ProcessReport[] {
  return [...processes].sort((a, b) => (a.startOffsetMs ?? -Infinity) - (b.startOffsetMs ?? -Infinity) || a.pid - b.pid);
}

/** Tree order with "├─"/"└─" prefixes; a recycled pid's child hangs under the instance that had started. */
/** `nameOf` names a quiet process in its parent's line (the terminal gives a rewritten title, as ps shows it). */
export function processRows(processes: ProcessReport[], groups: FoldedProcesses[], all: boolean, nameOf: (p: ProcessReport) => string = (p) => p.comm): ProcessRow[] {
  const sorted = sortByStart(processes);
  const instances = new Map<number, ProcessReport[]>();
  for (const p of sorted) instances.set(p.pid, [...(instances.get(p.pid) ?? []), p]);
  const parentOf = (p: ProcessReport): ProcessReport | undefined => {
    if (p.ppid === p.pid) return undefined;
    const candidates = instances.get(p.ppid) ?? [];
    const started = candidates.filter((c) => (c.startOffsetMs ?? -Infinity) <= (p.startOffsetMs ?? -Infinity));
    return started[started.length - 1] ?? candidates[0];
  };
  const children = new Map<ProcessReport | null, ProcessReport[]>();
  for (const p of sorted) {
    const parent = parentOf(p) ?? null;
    children.set(parent, [...(children.get(parent) ?? []), p]);
  }
  // A quiet process stays listed when something below it moved bytes (it is on the way there).
  const loud = new Set<ProcessReport>();
  const mark = (p: ProcessReport, seen: Set<ProcessReport>): boolean => {
    if (seen.has(p)) return loud.has(p);
    seen.add(p);
    let any = !quiet(p);
    for (const k of children.get(p) ?? []) if (mark(k, seen)) any = true;
    if (any) loud.add(p);
    return any;
  };
  const seenMark = new Set<ProcessReport>();
  for (const p of sorted) mark(p, seenMark);
  const groupsOf = new Map<ProcessReport | null, FoldedProcesses[]>();
  for (const g of groups) {
    const candidates = instances.get(g.ppid) ?? [];
    const parent = (g.parentStartTimeNs !== undefined ? candidates.find((c) => c.startTimeNs === g.parentStartTimeNs) : undefined) ?? candidates[candidates.length - 1] ?? null;
    groupsOf.set(parent, [...(groupsOf.get(parent) ?? []), g]);
  }

  const out: ProcessRow[] = [];
  const walked = new Set<ProcessReport>();
  // A quiet process folded into its parent's line takes its (quiet) descendants with it.
  const hide = (p: ProcessReport) => {
    if (walked.has(p)) return;
    walked.add(p);
    for (const k of children.get(p) ?? []) hide(k);
  };
  const walk = (p: ProcessReport | null, lead: string, branch: string) => {
    if (p) {
      if (walked.has(p)) return;
      walked.add(p);
      out.push({ kind: 'process', proc: p, prefix: lead + branch });
    }
    const next = p ? lead + (branch === '├─' ? '│ ' : branch === '└─' ? '  ' : '') : '';
    const kids = (children.get(p) ?? []).filter((k) => !walked.has(k));
    // Top level: the roots themselves, quiet or not, are always shown.
    const shown = all || p === null ? kids : kids.filter((k) => loud.has(k));
    const hidden = all || p === null ? [] : kids.filter((k) => !loud.has(k));
    const extra: ProcessRow[] = (groupsOf.get(p) ?? []).map((g) => ({ kind: 'group' as const, group: g, prefix: '' }));
    for (const h of hidden) hide(h);
    if (hidden.length) {
      const tally = new Map<string, number>();
      for (const h of hidden) tally.set(nameOf(h), (tally.get(nameOf(h)) ?? 0) + 1);
      extra.push({ kind: 'quiet', count: hidden.length, comms: [...tally.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])), prefix: '' });
    }
    const total = shown.length + extra.length;
    shown.forEach((k, i) => walk(k, next, p === null ? '' : i === total - 1 ? '└─' : '├─'));
    extra.forEach((row, i) => {
      const last = shown.length + i === total - 1;
      out.push({ ...row, prefix: p === null ? '' : next + (last ? '└─' : '├─') });
    });
  };
  walk(null, '', '');
  for (const p of sorted) if (!walked.has(p)) walk(p, '', ''); // a ppid cycle has no root: show it rather than drop it
  return out;
}
