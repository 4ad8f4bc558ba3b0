// SPDX-License-Identifier: MIT
// Terminal rendering of a Report. It reads nothing but the Report, so `proctap report FILE.json`
// prints exactly what `proctap run` printed. Tables are borderless (a rule under the heads) and
// are fitted to `width` columns by shrinking the command column and wrapping the wide ones.

import Table from 'cli-table3';
import type { ConnectionReport, DnsReport, L7Report, L7LatencyReport, Distributions, DurationStats, EndpointReport, FoldedConnections, IsolationReport, LostCounters, Pattern, ProcessReport, Report, SizeStats, Traffic } from '../schema/report';
import { formatArgv, formatBytes, formatCount, formatDuration, formatEndpoint, formatExit, signalName, truncate } from '../util/format';
import { containerLabel } from '../proc/container';
import { processRows } from './process-rows';

export interface RenderOptions {
  color: boolean;
  /** Terminal width to fit the tables to (default 100). */
  width?: number;
  /** Connections shown before the rest are summarised (default 20). */
  maxRows?: number;
  /** Every process, one row each (default: those that moved no byte are one line under their parent,
   *  and at most TOP.processes rows). */
  allProcesses?: boolean;
}

const DEFAULT_WIDTH = 100;
const DEFAULT_MAX_ROWS = 20;
/** Rows of each table before an "N more" line (connections: maxRows). */
export const TOP = { processes: 40, endpoints: 20, folded: 10, patterns: 20, names: 20, l7: 20 };
const GAP = 2;

type Align = 'left' | 'right';

interface Column {
  head: string;
  align?: Align;
  /** Narrowest the column may be squeezed to; omitted = never squeezed. */
  min?: number;
  /** Squeeze order: lower gives way first (default: column index). */
  order?: number;
  /** Re-lays a cell out for a squeezed width (default: word wrap). */
  fit?: (text: string, width: number) => string;
}

// Our own escapes: cli-table3's colors decide by themselves from the environment (CI=true turns them off).
const ANSI = {
  cyan: (s: string) => s.split('\n').map((line) => `\x1b[36m${line}\x1b[39m`).join('\n'),
  red: (s: string) => `\x1b[1;31m${s}\x1b[0m`,
  bold: (s: string) => `\x1b[1m${s}\x1b[22m`,
};

const len = (s: string) => Array.from(s).length;

function textWidth(s: string): number {
  return Math.max(0, ...s.split('\n').map(len));
}

/** Longest single word: the narrowest a word-wrapped cell can go without splitting a word. */
function longestWord(s: string): number {
  return Math.max(0, ...s.split(/\s+/).map(len));
}

/** A figure and its unit ("120 B", "1.00 s", "9 times") are one word for wrapping: never split over two
 *  lines, yet separated by a plain space, so that `grep '250 ms'` finds them. */
const UNIT = /^(B|KiB|MiB|GiB|TiB|PiB|EiB|ms|s|times|calls|packets|connections?|B\/s|KiB\/s|MiB\/s|GiB\/s|TiB\/s)[,;:)]*$/;

function words(para: string): string[] {
  const out: string[] = [];
  for (const w of para.split(' ').filter((x) => x !== '')) {
    const prev = out[out.length - 1];
    if (prev !== undefined && /\d$/.test(prev) && UNIT.test(w)) out[out.length - 1] = `${prev} ${w}`;
    else out.push(w);
  }
  return out;
}

/** Greedy word wrap to `width`; a word longer than a line (a long IPv6 endpoint) is split. */
export function wrapText(text: string, width: number): string {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of words(para)) {
      if (line !== '' && len(line) + 1 + len(word) <= width) {
        line += ' ' + word;
        continue;
      }
      if (line !== '') out.push(line);
      let rest = Array.from(word);
      while (rest.length > width) {
        // Prefer to split an address after a ':' or '.' so the pieces still read as one.
        const head = rest.slice(0, width);
        const cut = Math.max(head.lastIndexOf(':'), head.lastIndexOf('.')) + 1;
        const n = cut > width / 2 ? cut : width;
        out.push(rest.slice(0, n).join(''));
        rest = rest.slice(n);
      }
      line = rest.join('');
    }
    out.push(line);
  }
  return out.join('\n');
}

/** "tx/rx" pair that does not fit goes on two lines, "tx/" over "rx". */
function fitPair(text: string, width: number): string {
  if (len(text) <= width) return text;
  const slash = text.indexOf('/');
  return slash < 0 ? wrapText(text, width) : `${text.slice(0, slash + 1)}\n${text.slice(slash + 1)}`;
}

function pairMin(rows: string[][], col: number): number {
  return Math.max(1, ...rows.map((r) => Math.max(...r[col].split('/').map((part, i) => len(part) + (i === 0 ? 1 : 0)))));
}

/** Column widths that fit `width`: natural widths, then squeeze the columns that have a `min`, in
 *  their order, first only as far as they go without splitting a word (a truncated column goes to
 *  its `min` then), and only then, in reverse order, down to `min`. */
function fitWidths(columns: Column[], rows: string[][], width: number): number[] {
  const widths = columns.map((c, i) => Math.max(textWidth(c.head), ...rows.map((r) => textWidth(r[i]))));
  let excess = widths.reduce((a, b) => a + b, 0) + GAP * (columns.length - 1) - width;
  const order = columns.map((c, i) => ({ c, i })).sort((a, b) => (a.c.order ?? a.i) - (b.c.order ?? b.i));
  const soft = (c: Column, i: number) =>
    c.fit === truncate ? c.min ?? 0 : c.fit === undefined ? Math.max(0, ...rows.map((r) => longestWord(r[i]))) : widths[i];
  // Splitting words goes the other way round: the last to give way softly is the first to split.
  for (const [phase, cols] of [[soft, order], [(c: Column) => c.min ?? 0, [...order].reverse()]] as const) {
    for (const { c, i } of cols) {
      if (excess <= 0) return widths;
      if (c.min === undefined) continue;
      const floor = Math.max(c.min, phase(c, i), longestWord(c.head));
      const take = Math.min(excess, Math.max(0, widths[i] - floor));
      widths[i] -= take;
      excess -= take;
    }
  }
  return widths;
}

/** Borderless table, a rule under the heads, fitted to `opts.width`; trailing blanks trimmed. */
function renderTable(columns: Column[], rows: string[][], opts: { color: boolean; width: number }): string {
  const widths = fitWidths(columns, rows, opts.width);
  const table = new Table({
    head: columns.map((c, i) => {
      const head = textWidth(c.head) <= widths[i] ? c.head : wrapText(c.head, widths[i]);
      return opts.color ? ANSI.cyan(head) : head;
    }),
    colWidths: widths,
    colAligns: columns.map((c) => c.align ?? 'left'),
    chars: {
      top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
      bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
      left: '', 'left-mid': '', right: '', 'right-mid': '',
      mid: '─', 'mid-mid': ' '.repeat(GAP), middle: ' '.repeat(GAP),
    },
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0, compact: true },
  });
  for (const row of rows) {
    table.push(row.map((text, c) => (textWidth(text) <= widths[c] ? text : (columns[c].fit ?? wrapText)(text, widths[c]))));
  }
  return table
    .toString()
    .split('\n')
    .map((line) => line.trimEnd())
    .join('\n');
}

function pair(tx: number, rx: number, fmt: (n: number) => string): string {
  return tx === 0 && rx === 0 ? '-' : `${fmt(tx)}/${fmt(rx)}`;
}

function sumTraffic(a: Traffic, b: Traffic): Traffic {
  return { txBytes: a.txBytes + b.txBytes, rxBytes: a.rxBytes + b.rxBytes, txCalls: a.txCalls + b.txCalls, rxCalls: a.rxCalls + b.rxCalls };
}

// ---------------------------------------------------------------- header

function lostItems(lost: LostCounters, unattributed: { tx: number; rx: number }): string[] {
  const items: string[] = [];
  if (lost.records > 0) {
    const kinds = Object.entries(lost.recordsByKind)
      .filter(([, n]) => n > 0)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, n]) => `${k} ${formatCount(n)}`);
    items.push(`${formatCount(lost.records)} ring-buffer records dropped${kinds.length ? ` (${kinds.join(', ')})` : ''}`);
  } else {
    // A per-kind count without a total would still be a loss: never hide it.
    for (const [k, n] of Object.entries(lost.recordsByKind)) if (n > 0) items.push(`${formatCount(n)} ${k} records dropped`);
  }
  if (lost.flowTableFullCalls > 0 || lost.flowTableFullBytes > 0) {
    items.push(
      `${formatCount(lost.flowTableFullCalls)} send/recv calls (${formatBytes(lost.flowTableFullBytes)}) not counted: flow table full`,
    );
  }
  if (lost.tracedTableFull > 0) {
    const n = lost.tracedTableFull;
    items.push(`${formatCount(n)} child process${n === 1 ? '' : 'es'} not followed: traced-process table full`);
  }
  if ((lost.retransmitTableFull ?? 0) > 0) items.push(`${formatCount(lost.retransmitTableFull!)} retransmits not counted: retransmit table full`);
  if (lost.procConnectorOverflows > 0) items.push(`${formatCount(lost.procConnectorOverflows)} proc connector overflows (process events missed)`);
  if (unattributed.tx > 0 || unattributed.rx > 0) {
    items.push(`unattributed packets tx ${formatCount(unattributed.tx)} / rx ${formatCount(unattributed.rx)}`);
  }
  return items;
}

/** Greedy wrap of `items` joined by "; " into lines of at most `width`, continuation indented. */
function wrapItems(prefix: string, items: string[], width: number): string[] {
  const indent = ' '.repeat(prefix.length);
  const lines: string[] = [];
  let line = prefix;
  items.forEach((item, i) => {
    const piece = item + (i < items.length - 1 ? ';' : '');
    const fresh = line === prefix || line === indent;
    if (!fresh && Array.from(line).length + 1 + Array.from(piece).length > width) {
      lines.push(line);
      line = indent + piece;
    } else {
      line += (fresh ? '' : ' ') + piece;
    }
  });
  lines.push(line);
  return lines;
}

function commandExit(report: Report): string {
  if (report.exitCode === null) return report.mode === 'attach' ? 'n/a (attached)' : 'unknown';
  // The command is the first root; its entry says whether a signal produced the 128+N code.
  const ids = new Set(report.processes.map((p) => p.pid));
  const root = sortByStart(report.processes).find((p) => !ids.has(p.ppid) || p.ppid === p.pid);
  const signal = root && root.exitCode === report.exitCode ? root.exitSignal : null;
  return formatExit(report.exitCode, signal);
}

/** run --isolate in one line: where the command ran and how it got out. */
export function isolationLine(iso: IsolationReport): string {
  const nat = iso.device === null ? 'no NAT (no default route: host only)' : `NAT (${iso.nat}) out of ${iso.device}`;
  const fwd = iso.ipForward.changed ? 'ip_forward on for the run' : `ip_forward ${iso.ipForward.before === '1' ? 'already on' : iso.ipForward.before}`;
  const v6 = iso.ipv6 ? `, ${iso.ipv6.address} via ${iso.ipv6.gateway}` : '';
  return `netns ${iso.netns}: ${iso.address} via ${iso.gateway} (${iso.hostInterface})${v6}, ${nat}, ${fwd}${iso.dns === 'public' ? ', public DNS' : ''}`;
}

/** attach in one line: the processes taken at the attach, "42 nginx + 2 descendants: 43, 44". */
export function attachedLine(attached: NonNullable<Report['attached']>): string {
  if (attached.length === 0) return 'nothing at the attach';
  const why = { pid: '', comm: ' (--comm)', cgroup: ' (--cgroup)', container: ' (--container)', descendant: '' };
  const listed = attached.filter((a) => a.via !== 'descendant').map((a) => `${a.pid} ${a.comm}${why[a.via]}`);
  const below = attached.filter((a) => a.via === 'descendant').map((a) => a.pid);
  const shown = below.length <= 12 ? below.join(', ') : `${below.slice(0, 12).join(', ')} and ${below.length - 12} more`;
  return `${listed.join(', ')}${below.length ? ` + ${below.length} descendant${below.length === 1 ? '' : 's'}: ${shown}` : ''}`;
}

function renderHeader(report: Report, color: boolean, width: number): string[] {
  const lines = [
    `${report.tool.name} ${report.tool.version} · ${report.mode} · backend ${report.backend}`,
    `command   ${formatArgv(report.command, width - 10) || '-'}`,
    `started   ${report.startedAt}   duration ${formatDuration(report.durationMs)}   exit ${commandExit(report)}`,
  ];
  if (report.attached) lines.push(...wrapText(attachedLine(report.attached), width - 10).split('\n').map((l, i) => (i === 0 ? 'attached  ' : '          ') + l));
  if (report.isolation) lines.push(...wrapText(isolationLine(report.isolation), width - 10).split('\n').map((l, i) => (i === 0 ? 'isolated  ' : '          ') + l));
  const lost = lostItems(report.lost, report.unattributedPackets);
  if (lost.length === 0) lines.push('lost      nothing lost');
  else lines.push(...wrapItems("!! LOST: ", lost, width).map((l) => (color ? ANSI.red(l) : l)));
  for (const note of report.notes) {
    lines.push(...wrapText(note, width - 6).split('\n').map((l, i) => (i === 0 ? 'note: ' : '      ') + l));
  }
  return lines;
}

// ---------------------------------------------------------------- processes

function sortByStart(processes: ProcessReport[]): ProcessReport[] {
  return [...processes].sort((a, b) => (a.startOffsetMs ?? -Infinity) - (b.startOffsetMs ?? -Infinity) || a.pid - b.pid);
}

/** Depth-first tree order with the "├─"/"└─" prefix of each process. A recycled pid is several
 *  entries: a child hangs under the instance of its parent pid that had started when it did. */
export function processTree(processes: ProcessReport[]): Array<{ proc: ProcessReport; prefix: string }> {
  const sorted = sortByStart(processes);
  const instances = new Map<number, ProcessReport[]>();
  for (const p of sorted) instances.set(p.pid, [...(instances.get(p.pid) ?? []), p]);
  const parentOf = (p: ProcessReport): ProcessReport | undefined => {
    if (p.ppid === p.pid) return undefined;
    const candidates = instances.get(p.ppid) ?? [];
    const started = candidates.filter((c) => (c.startOffsetMs ?? -Infinity) <= (p.startOffsetMs ?? -Infinity));
    return started[started.length - 1] ?? candidates[0];
  };
  const children = new Map<ProcessReport, ProcessReport[]>();
  const roots: ProcessReport[] = [];
  for (const p of sorted) {
    const parent = parentOf(p);
    if (!parent) roots.push(p);
    else children.set(parent, [...(children.get(parent) ?? []), p]);
  }
  const out: Array<{ proc: ProcessReport; prefix: string }> = [];
  const seen = new Set<ProcessReport>();
  const walk = (p: ProcessReport, lead: string, branch: string) => {
    if (seen.has(p)) return;
    seen.add(p);
    out.push({ proc: p, prefix: lead + branch });
    const kids = (children.get(p) ?? []).filter((k) => !seen.has(k));
    const next = lead + (branch === '├─' ? '│ ' : branch === '└─' ? '  ' : '');
    kids.forEach((k, i) => walk(k, next, i === kids.length - 1 ? '└─' : '├─'));
  };
  for (const p of roots) walk(p, '', '');
  for (const p of sorted) walk(p, '', ''); // a ppid cycle has no root: show it rather than drop it
  return out;
}

/** A title the program wrote over its arguments ("nginx: worker process", "redis-server 127.0.0.1:6379"):
 *  one argument holding the whole line. Shown as ps shows it: as is, unprintable characters as "?". */
export function processTitle(argv: string[]): string | null {
  // eslint-disable-next-line no-control-regex
  return argv.length === 1 && argv[0].includes(' ') ? argv[0].replace(/[\x00-\x1f\x7f]/g, '?') : null;
}

function processCommand(p: ProcessReport): string {
  if (p.argv.length === 0) return `[${p.comm}]`;
  const title = processTitle(p.argv);
  if (title !== null) return p.comm === '' || title.startsWith(p.comm) ? title : `${p.comm}: ${title}`;
  const base = p.argv[0].slice(p.argv[0].lastIndexOf('/') + 1);
  // comm is the executable's name cut to 15 bytes: don't repeat it when argv[0] already says it.
  if (p.comm !== '' && base.startsWith(p.comm)) return formatArgv([base, ...p.argv.slice(1)]);
  return `${p.comm}: ${formatArgv(p.argv)}`;
}

/** Exit column: "0", "1", "SIGTERM (143)" (the header gives formatExit's long form), "running". */
function exitCell(p: ProcessReport): string {
  if (p.exitSignal !== null && p.exitSignal > 0) return `${signalName(p.exitSignal)} (${p.exitCode ?? 128 + p.exitSignal})`;
  if (p.exitOffsetMs === null && p.exitCode === null) return 'running';
  return formatExit(p.exitCode, null);
}

const noTraffic = (): Traffic => ({ txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });

function renderProcesses(report: Report, opts: { color: boolean; width: number; all: boolean }): string {
  const rows0 = processRows(report.processes, report.foldedProcesses ?? [], opts.all);
  const limit = opts.all ? Infinity : TOP.processes;
  const shownRows = rows0.slice(0, limit);
  const columns: Column[] = [
    { head: 'PID' },
    { head: 'COMMAND', min: 16, order: 1, fit: truncate },
    { head: 'START', align: 'right' },
    { head: 'EXIT', min: 1, order: 0 },
    { head: 'TCP TX/RX', align: 'right', order: 2, fit: fitPair },
    { head: 'UDP TX/RX', align: 'right', order: 3, fit: fitPair },
    { head: 'CALLS TX/RX', align: 'right', order: 4, fit: fitPair },
    { head: 'PKTS TX/RX', align: 'right', order: 5, fit: fitPair },
  ];
  const trafficCells = (tcp: Traffic, udp: Traffic, packets: { txPackets: number; rxPackets: number }) => {
    const calls = sumTraffic(tcp, udp);
    return [
      pair(tcp.txBytes, tcp.rxBytes, formatBytes),
      pair(udp.txBytes, udp.rxBytes, formatBytes),
      pair(calls.txCalls, calls.rxCalls, formatCount),
      pair(packets.txPackets, packets.rxPackets, formatCount),
    ];
  };
  const rows = shownRows.map((r) => {
    if (r.kind === 'process') {
      const p = r.proc;
      return [
        `${r.prefix}${p.pid}${p.nspid !== undefined ? ` (ns ${p.nspid})` : ''}${p.container ? ` @${containerLabel(p.container)}` : ''}`,
        processCommand(p),
        p.startOffsetMs === null ? 'before' : formatDuration(p.startOffsetMs),
        exitCell(p),
        ...trafficCells(p.tcp, p.udp, p.packets),
      ];
    }
    if (r.kind === 'quiet') {
      const what = r.comms.slice(0, 4).map(([c, n]) => (n > 1 ? `${c} ×${n}` : c)).join(', ') + (r.comms.length > 4 ? ', …' : '');
      return [`${r.prefix}…`, `${formatCount(r.count)} without traffic: ${what}`, '', '', ...trafficCells(noTraffic(), noTraffic(), { txPackets: 0, rxPackets: 0 })];
    }
    const g = r.group;
    const exits = Object.entries(g.exits).sort((a, b) => b[1] - a[1]);
    const exit = exits.length === 1 ? exits[0][0] : `${exits[0][0]} ×${formatCount(exits[0][1])}, …`;
    return [`${r.prefix}×${formatCount(g.count)}`, `[${g.comm}] folded`, g.firstStartOffsetMs === null ? '-' : formatDuration(g.firstStartOffsetMs), exit, ...trafficCells(g.tcp, g.udp, g.packets)];
  });
  columns[3].min = Math.max(1, ...rows.map((r) => longestWord(r[3])));
  for (const c of [4, 5, 6, 7]) columns[c].min = pairMin(rows, c);
  const lines = [renderTable(columns, rows, opts)];
  const rest = rows0.length - shownRows.length;
  if (rest > 0) lines.push(`… ${formatCount(rest)} more process row${rest === 1 ? '' : 's'} (--all-processes lists every process)`);
  return lines.join('\n');
}

/** "… 12 more endpoints": the line under a table cut at its top N. */
function moreLine(rest: number, what: string, hint = 'see --json'): string[] {
  return rest > 0 ? [`… ${formatCount(rest)} more ${what}${rest === 1 ? '' : 's'} (${hint})`] : [];
}

// ---------------------------------------------------------------- endpoints and connections

function formatPids(pids: number[], max = 4, more = false): string {
  const text = pids.length <= max ? pids.join(', ') : `${pids.slice(0, max).join(', ')}, +${pids.length - max}`;
  return more ? `${text}, …` : text;
}

function renderEndpoints(endpoints: EndpointReport[], opts: { color: boolean; width: number }): string {
  const sorted = [...endpoints].sort(
    (a, b) =>
      b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes) ||
      a.proto.localeCompare(b.proto) ||
      a.remoteAddr.localeCompare(b.remoteAddr) ||
      a.remotePort - b.remotePort,
  );
  const columns: Column[] = [
    { head: 'PROTO' },
    { head: 'ENDPOINT', min: 16, order: 1 },
    { head: 'TX', align: 'right' },
    { head: 'RX', align: 'right' },
    { head: 'CALLS TX/RX', align: 'right', min: 1, order: 2, fit: fitPair },
    { head: 'CONNS', align: 'right' },
    { head: 'PIDS', min: 6, order: 0 },
  ];
  const rows = sorted.slice(0, TOP.endpoints).map((e) => [
    e.proto,
    withName(endpointText(e), e.remoteName),
    formatBytes(e.txBytes),
    formatBytes(e.rxBytes),
    pair(e.txCalls, e.rxCalls, formatCount),
    formatCount(e.connections),
    formatPids(e.pids, 4, e.morePids),
  ]);
  columns[4].min = pairMin(rows, 4);
  return [renderTable(columns, rows, opts), ...moreLine(sorted.length - rows.length, 'endpoint')].join('\n');
}

/** "10.0.0.7:443" for a server we talk to; "10.0.0.9 → :80" for clients of our port 80 (their own
 *  ports, ephemeral, are not told apart). */
function endpointText(e: { remoteAddr: string; remotePort: number; direction?: 'inbound'; localPort?: number }): string {
  return e.direction === 'inbound' ? `${e.remoteAddr.includes(':') ? `[${e.remoteAddr}]` : e.remoteAddr} → :${e.localPort}` : formatEndpoint(e.remoteAddr, e.remotePort);
}

const OUTCOME_ORDER: ConnectionReport['outcome'][] = ['closed', 'open', 'refused', 'reset', 'timeout', 'failed', 'aborted'];

function renderFolded(groups: FoldedConnections[], opts: { color: boolean; width: number }): string {
  const columns: Column[] = [
    { head: 'PROTO' },
    { head: 'ENDPOINT', min: 16, order: 1 },
    { head: 'CONNS', align: 'right' },
    { head: 'TX', align: 'right' },
    { head: 'RX', align: 'right' },
    { head: 'DURATION P50/MAX', align: 'right', order: 2, fit: fitPair },
    { head: 'OUTCOMES', min: 8, order: 0 },
  ];
  const shown = groups.slice(0, TOP.folded);
  const rows = shown.map((g) => [
    g.proto,
    endpointText(g),
    formatCount(g.connections),
    formatBytes(g.txBytes),
    formatBytes(g.rxBytes),
    g.durations.count ? `${formatDuration(g.durations.p50 ?? 0)}/${formatDuration(g.durations.max ?? 0)}` : '-',
    OUTCOME_ORDER.filter((o) => (g.outcomes[o] ?? 0) > 0).map((o) => `${formatCount(g.outcomes[o]!)} ${OUTCOME_TEXT[o] ?? o}`).join(', '),
  ]);
  columns[5].min = pairMin(rows, 5);
  return [renderTable(columns, rows, opts), ...moreLine(groups.length - shown.length, 'folded group')].join('\n');
}

/** "127.0.0.1:443 (example.com)": the name a DNS answer gave the address, beside it. */
function withName(endpoint: string, name: string | undefined): string {
  return name === undefined ? endpoint : `${endpoint} (${name})`;
}

const OUTCOME_TEXT: Partial<Record<ConnectionReport['outcome'], string>> = { timeout: 'timed out' };

function renderConnections(connections: ConnectionReport[], maxRows: number, opts: { color: boolean; width: number }): string {
  const sorted = [...connections].sort((a, b) => a.startOffsetMs - b.startOffsetMs || a.pid - b.pid);
  const shown = sorted.slice(0, Math.max(0, maxRows));
  const pathOf = (c: ConnectionReport) =>
    `${formatEndpoint(c.localAddr, c.localPort)}${c.nat ? ` (NAT ${formatEndpoint(c.nat.addr, c.nat.port)})` : ''} → ${withName(formatEndpoint(c.remoteAddr, c.remotePort), c.remoteName)}`;
  // Retransmits get a column only when there were some: a column of zeros says nothing.
  const retransmits = sorted.some((c) => (c.retransmits ?? 0) > 0);
  const rows = shown.map((c) => {
    const outcome = OUTCOME_TEXT[c.outcome] ?? c.outcome;
    const row = [
      String(c.pid),
      c.proto,
      c.role,
      pathOf(c),
      formatDuration(c.startOffsetMs),
      c.durationMs === null ? 'open' : formatDuration(c.durationMs),
      formatBytes(c.txBytes),
      formatBytes(c.rxBytes),
    ];
    if (retransmits) row.push(c.retransmits === undefined ? '-' : formatCount(c.retransmits));
    row.push(c.error ? `${outcome} (${c.error})` : outcome);
    return row;
  });
  // Word wrap puts "local →" over "remote", each address whole while the column allows it.
  const columns: Column[] = [
    { head: 'PID' },
    { head: 'PROTO' },
    { head: 'ROLE' },
    { head: 'LOCAL → REMOTE', min: 12, order: 1 },
    { head: 'START', align: 'right' },
    { head: 'DURATION', align: 'right' },
    { head: 'TX', align: 'right' },
    { head: 'RX', align: 'right' },
    ...(retransmits ? [{ head: 'RETRANS', align: 'right' as const }] : []),
    { head: 'OUTCOME', min: 7, order: 0 },
  ];
  const lines = rows.length > 0 ? [renderTable(columns, rows, opts)] : [];
  const rest = sorted.length - shown.length;
  if (rest > 0) lines.push(`… ${formatCount(rest)} more connection${rest === 1 ? '' : 's'} (see --json)`);
  return lines.join('\n');
}

// ---------------------------------------------------------------- DNS names

function renderNames(dns: DnsReport, width: number): string {
  const lines = dns.names.slice(0, TOP.names).map((n) => {
    const via = n.cnames.length > 0 ? ` via ${n.cnames.join(' → ')}` : '';
    const text = `${n.name} → ${n.addresses.join(', ')}${via} (pid ${formatPids(n.pids)}, from ${n.servers.join(', ')})`;
    return wrapText(text, width - 2).split('\n').map((l, i) => (i === 0 ? '• ' : '  ') + l).join('\n');
  });
  lines.push(...moreLine(dns.names.length - Math.min(dns.names.length, TOP.names), 'name'));
  if (dns.malformed > 0) lines.push(`${formatCount(dns.malformed)} DNS response${dns.malformed === 1 ? '' : 's'} could not be parsed`);
  return lines.join('\n');
}

// ---------------------------------------------------------------- L7 (--l7)

function latencyCell(l: L7LatencyReport | null): string {
  if (l === null || l.count === 0) return '-';
  // one unit for the three: ms below 10 s, else s
  const [div, unit] = l.maxMs >= 10_000 ? [1000, 's'] : [1, 'ms'];
  const n = (v: number) => String(Number((v / div).toPrecision(v / div >= 100 ? 4 : 2)));
  return `${n(l.p50Ms)}/${n(l.p99Ms)}/${n(l.maxMs)} ${unit}`;
}

function renderL7(l7: L7Report, opts: { color: boolean; width: number }): string {
  const columns: Column[] = [
    { head: 'PID', align: 'right' },
    { head: 'ENDPOINT', min: 12, order: 1 },
    { head: 'PROTO' },
    { head: 'OPERATION', min: 12, order: 0 },
    { head: 'STATUS' },
    { head: 'COUNT', align: 'right' },
    { head: 'ERR', align: 'right' },
    { head: 'REQ/RESP', align: 'right', min: 1, order: 2, fit: fitPair },
    { head: 'P50/P99/MAX', align: 'right' },
  ];
  const shown = l7.rows.slice(0, TOP.l7);
  const rows = shown.map((r) => [
    r.pid === null ? '*' : String(r.pid),
    r.nameSource && r.nameSource !== 'dns' ? `${r.endpoint} (${r.nameSource})` : r.endpoint,
    `${r.protocol}${r.role === 'server' ? ' srv' : ''}${r.tls > 0 ? ' tls' : ''}`,
    truncate(r.operation, 120),
    r.status || '-',
    formatCount(r.count),
    r.errors > 0 ? formatCount(r.errors) : '-',
    pair(r.requestBytes, r.responseBytes, formatBytes),
    latencyCell(r.latencyFirst),
  ]);
  columns[7].min = pairMin(rows, 7);
  const notes = l7.notes.map((n) => wrapText(n, opts.width - 2).split('\n').map((l, i) => (i === 0 ? '• ' : '  ') + l).join('\n'));
  const patterns = l7.patterns.slice(0, TOP.patterns).map((p) => wrapText(p.summary, opts.width - 2).split('\n').map((l, i) => (i === 0 ? '• ' : '  ') + l).join('\n'));
  return [
    ...(rows.length > 0 ? [renderTable(columns, rows, opts), ...moreLine(l7.rows.length - shown.length, 'row')] : []),
    ...patterns,
    ...moreLine(l7.patterns.length - Math.min(l7.patterns.length, TOP.patterns), 'L7 pattern'),
    ...notes,
  ].join('\n');
}

// ---------------------------------------------------------------- patterns and statistics

function renderPatterns(patterns: Pattern[], width: number): string {
  const shown = patterns.slice(0, TOP.patterns);
  const lines = shown.map((p) => wrapText(p.summary, width - 2).split('\n').map((l, i) => (i === 0 ? '• ' : '  ') + l).join('\n'));
  return [...lines, ...moreLine(patterns.length - shown.length, 'pattern')].join('\n');
}

/** "≤1023 B": a log2 bucket's upper bound (sizes are known to a power of two). */
function sizeBound(n: number | null): string {
  return n === null ? '-' : `≤${formatBytes(n)}`;
}

function renderStatistics(d: Distributions, width: number): string[] {
  const lines: string[] = [];
  const sizes = (name: string, s: SizeStats) =>
    s.calls === 0 ? `${name} -` : `${name} p50 ${sizeBound(s.p50)} · p90 ${sizeBound(s.p90)} · ${formatCount(s.calls)} calls`;
  const m = d.messageSizes;
  if (m.tx.calls + m.rx.calls > 0) lines.push(`message sizes   ${sizes('tx', m.tx)}`, `                ${sizes('rx', m.rx)}`);
  const dur = (s: DurationStats) =>
    `p50 ${formatDuration(s.p50 ?? 0)} · p90 ${formatDuration(s.p90 ?? 0)} · p99 ${formatDuration(s.p99 ?? 0)} · max ${formatDuration(s.max ?? 0)}`;
  const c = d.connectionDurations;
  if (c.count > 0) lines.push(`connections     ${dur(c)} · ${formatCount(c.count)} ended${c.open > 0 ? `, ${formatCount(c.open)} open` : ''}`);
  else if (c.open > 0) lines.push(`connections     ${formatCount(c.open)} open, none ended`);
  const t = d.timeToFirstByte;
  if (t.count > 0) {
    lines.push(
      `first byte      p50 ≤${formatDuration(t.p50 ?? 0)} · p90 ≤${formatDuration(t.p90 ?? 0)} · max ≤${formatDuration(t.max ?? 0)} · ` +
        `${formatCount(t.count)} TCP (upper bounds: sampled every ${formatDuration(t.resolutionMs)})`,
    );
  }
  // Continuation lines keep the 16-column label indent.
  return lines.flatMap((l) => wrapText(l.slice(16), width - 16).split('\n').map((w, i) => (i === 0 ? l.slice(0, 16) : ' '.repeat(16)) + w));
}

// ---------------------------------------------------------------- totals and entry point

function renderTotals(report: Report): string[] {
  const t = report.totals;
  const traffic = (name: string, x: Traffic) =>
    `${name}  tx ${formatBytes(x.txBytes)} in ${formatCount(x.txCalls)} calls   rx ${formatBytes(x.rxBytes)} in ${formatCount(x.rxCalls)} calls`;
  const p = t.packets;
  return [
    traffic('TCP', t.tcp),
    traffic('UDP', t.udp),
    `IP   tx ${formatCount(p.txPackets)} packets (${formatBytes(p.txBytes)})   rx ${formatCount(p.rxPackets)} packets (${formatBytes(p.rxBytes)})`,
  ];
}

export function renderReport(report: Report, opts: RenderOptions): string {
  const width = Math.max(40, opts.width ?? DEFAULT_WIDTH);
  const maxRows = opts.maxRows ?? DEFAULT_MAX_ROWS;
  const layout = { color: opts.color, width };
  const title = (s: string) => (opts.color ? ANSI.bold(s) : s);
  const section = (name: string, count: number, body: () => string, extra = '', unit = '') =>
    count === 0 ? [title(`${name}: none`)] : [title(`${name} (${formatCount(count)}${unit ? ` ${unit}${count === 1 ? '' : 's'}` : ''}${extra ? `; ${extra}` : ''})`), body()];

  const folding = report.folding;
  const foldedProcesses = (report.foldedProcesses ?? []).reduce((n, g) => n + g.count, 0);
  const processCount = report.processes.length + foldedProcesses;
  const out: string[] = [
    ...renderHeader(report, opts.color, width),
    '',
    ...section('Processes', processCount, () => renderProcesses(report, { ...layout, all: opts.allProcesses === true }), foldedProcesses ? `${formatCount(foldedProcesses)} folded` : ''),
    '',
    ...section('Remote endpoints', report.endpoints.length, () => renderEndpoints(report.endpoints, layout)),
    '',
    ...section('Connections', report.connections.length + (folding?.connections ?? 0), () => renderConnections(report.connections, maxRows, layout), folding?.connections ? `${formatCount(folding.connections)} folded` : ''),
    '',
  ];
  if (report.foldedConnections && report.foldedConnections.length > 0) {
    const keep = folding?.keep.connections;
    const policy = keep ? `listed: the ${formatCount(keep.newest)} newest, ${formatCount(keep.largest)} largest and ${formatCount(keep.failed)} failed closed` : '';
    out.push(...section('Folded connections', report.foldedConnections.length, () => renderFolded(report.foldedConnections!, layout), policy, 'group'), '');
  }
  if (report.dns) out.push(...section('DNS names', report.dns.names.length, () => renderNames(report.dns!, width)), '');
  if (report.l7) out.push(...section('L7 exchanges', report.l7.exchanges, () => renderL7(report.l7!, layout), 'latency: request → first byte of the answer'), ...(report.l7.exchanges === 0 && report.l7.notes.length > 0 ? [renderL7(report.l7, layout)] : []), '');
  if (report.patterns) out.push(...section('Patterns', report.patterns.length, () => renderPatterns(report.patterns!, width)), '');
  const stats = report.distributions ? renderStatistics(report.distributions, width) : [];
  if (stats.length > 0) out.push(title('Statistics'), ...stats, '');
  out.push(
    title('Totals'),
    ...renderTotals(report),
  );
  return out.join('\n') + '\n';
}
