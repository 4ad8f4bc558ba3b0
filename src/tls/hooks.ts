// SPDX-License-Identifier: MIT
// Finds the TLS libraries of traced processes and attaches the TLS uprobes to each file once.
//
// A uprobe belongs to a file (an inode), not to a process: it fires in every process that maps the file,
// and the kernel programs keep only traced processes. So each file is hooked once, named by device and
// inode as /proc/PID/maps names it, and opened inside the process's own mount namespace
// (/proc/PID/root/<path>, or /proc/PID/map_files/<range> when that path no longer leads to the same file:
// a deleted or replaced library, an overlay file system).
//
// When files are looked for (each look is a read of /proc/PID/maps; each new file is inspected once):
//   - before a launched command is released, and at attach: the TLS libraries the ld.so cache of the root
//     names (the dynamic loader maps them right after exec, faster than any scan could follow), and the
//     launched executable itself; at attach, each target's maps;
//   - at every exec record of a traced process (the new executable: static TLS, Node.js);
//   - at a process's first socket activity after its exec (libraries it loaded with dlopen before
//     talking to the network, Python's `import ssl`);
//   - every RESCAN_MS, the processes that had socket activity since their last scan, at most
//     RESCAN_BATCH of them a round (libraries loaded later still).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TraceRecord } from '../kernel/records';
import { TLS_PROGRAMS } from './programs';
import { inspectElf, sectionMarkers } from './elf';
import { parseLdCache, tlsLibrariesInCache } from './ldcache';
import { EXECUTABLE_MARKERS, WANTED_SYMBOLS, planHooks, unhookableExecutable, unhookableLibrary, type HookPlan } from './libraries';
import { executableMappings, fileId, splitDev, type MappedFile } from './maps';
import type { TlsNoteFacts } from './notes';

export const RESCAN_MS = 2000;
export const RESCAN_BATCH = 32;

/** What attaching needs from the tracer (Tracer.attachUprobe / detach). */
export interface UprobeTarget {
  attachUprobe(program: string, binaryPath: string, symbol: string, options: { retprobe?: boolean; cookie?: number }): number;
  attachUprobeMulti(program: string, binaryPath: string, offsets: number[], options?: { retprobe?: boolean; cookies?: number[] }): number;
  detach(link: number): void;
}

export type FileVerdict =
  | { state: 'hooked'; library: string; path: string; links: number }
  | { state: 'unhookable'; library: string; path: string; reason: string }
  | { state: 'failed'; library: string; path: string; error: string }
  | { state: 'none' };

export interface TlsProcessUse {
  pid: number;
  comm: string;
  /** Files of TLS libraries it maps, hooked or not. */
  files: string[];
}

const MARKER_SECTIONS = [...new Set(EXECUTABLE_MARKERS.map((m) => m.section))];

function errorText(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const first = (e.message ?? String(err)).split('\n')[0];
  return e.code && !first.includes(e.code) ? `${e.code}: ${first}` : first;
}

export class TlsHooks {
  /** By file id (major:minor:inode). */
  readonly files = new Map<string, FileVerdict>();
  /** TLS library files each scanned process maps (by pid; replaced at exec). */
  readonly processes = new Map<number, TlsProcessUse>();
  /** Uprobes cannot be attached at all on this system (the first attach said why). */
  unavailable: string | null = null;
  /** TLS data records that arrived without a socket. */
  unboundRecords = 0;
  dataRecords = 0;
  private readonly scannedSinceExec = new Set<number>();
  private readonly active = new Set<number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly target: UprobeTarget,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Starts the bounded periodic rescan. */
  start(): void {
    this.timer = setInterval(() => this.rescanActive(), RESCAN_MS);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The TLS libraries the ld.so cache of `root` names ("/" or /proc/PID/root), hooked now. */
  hookSystemLibraries(root = '/'): void {
    let cache: Buffer;
    try {
      cache = fs.readFileSync(path.join(root, 'etc/ld.so.cache'));
    } catch {
      return;
    }
    for (const lib of tlsLibrariesInCache(parseLdCache(cache))) this.hookPath(path.join(root, lib), path.basename(lib), false);
  }

  /** A file named by a path in proctap's own view (the launched executable): hooked now if it is TLS. */
  hookPath(file: string, name = path.basename(file), executable = true): void {
    const id = regularFileId(file);
    if (id !== null && !this.files.has(id)) this.files.set(id, this.inspect(file, name, executable));
  }

  /** Reads the process's maps and hooks every TLS library file not seen before; false: it is gone (or
   *  a zombie). */
  scanProcess(pid: number): boolean {
    let maps: string;
    try {
      maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
    } catch {
      return false;
    }
    if (maps === '') return false; // exited, not yet reaped: a zombie has no mappings
    this.scannedSinceExec.add(pid);
    const exe = readLink(`/proc/${pid}/exe`)?.replace(/ \(deleted\)$/, '');
    const used: string[] = [];
    for (const file of executableMappings(maps)) {
      let verdict = this.files.get(file.id);
      if (!verdict) {
        verdict = this.inspect(this.openablePath(pid, file), path.basename(file.path), file.path === exe);
        this.files.set(file.id, verdict);
      }
      if (verdict.state !== 'none') used.push(file.id);
    }
    if (used.length > 0) this.processes.set(pid, { pid, comm: readComm(pid), files: used });
    else this.processes.delete(pid);
    return true;
  }

  /**
   * A process gone before its maps could be read (a short command, its exec record ~50 ms behind): the
   * executable its exec record names, when that file (as proctap's own view resolves the path) is a TLS
   * file already judged — a launched command's own executable is judged before it runs.
   */
  private noteGoneExecutable(pid: number, comm: string, filename: string): void {
    const id = regularFileId(filename);
    const verdict = id === null ? undefined : this.files.get(id);
    if (id !== null && verdict && verdict.state !== 'none') this.processes.set(pid, { pid, comm, files: [id] });
  }

  /** The record tap: scans at exec and at first socket activity, counts TLS data records. */
  onRecord(record: TraceRecord): void {
    switch (record.type) {
      case 'exec':
        this.scannedSinceExec.delete(record.tgid);
        if (!this.scanProcess(record.tgid)) this.noteGoneExecutable(record.tgid, record.comm, record.filename);
        this.scannedSinceExec.delete(record.tgid); // libraries follow the executable: scan again at first I/O
        break;
      case 'flow':
        if (!this.scannedSinceExec.has(record.key.tgid)) this.scanProcess(record.key.tgid);
        else this.active.add(record.key.tgid);
        break;
      case 'exit':
        this.scannedSinceExec.delete(record.tgid);
        this.active.delete(record.tgid);
        break;
      case 'data':
        if (record.source !== 'tls') break;
        this.dataRecords++;
        if (record.key.cookie === 0n) this.unboundRecords++;
        break;
    }
  }

  /** Processes that used a TLS library file in the given states (for the report's notes). */
  usesOf(states: ReadonlyArray<FileVerdict['state']>): Array<{ pid: number; comm: string; verdict: FileVerdict }> {
    const out: Array<{ pid: number; comm: string; verdict: FileVerdict }> = [];
    for (const p of this.processes.values()) {
      for (const id of p.files) {
        const verdict = this.files.get(id);
        if (verdict && states.includes(verdict.state)) out.push({ pid: p.pid, comm: p.comm, verdict });
      }
    }
    return out;
  }

  /** What the report's notes need (tlsNotes). */
  facts(mode: 'run' | 'attach', capture?: { format: 'pcapng' | 'pcap'; secrets?: unknown }): TlsNoteFacts {
    return {
      mode,
      unavailable: this.unavailable,
      unhooked: this.usesOf(['unhookable', 'failed']).map(({ pid, comm, verdict }) => ({
        pid,
        comm,
        library: verdict.state === 'none' ? '' : verdict.library,
        reason: verdict.state === 'unhookable' ? verdict.reason : verdict.state === 'failed' ? `could not be hooked: ${verdict.error}` : '',
      })),
      tlsProcesses: this.processes.size,
      dataRecords: this.dataRecords,
      unboundRecords: this.unboundRecords,
      capture: capture ? { format: capture.format, keyLog: capture.secrets !== undefined } : null,
    };
  }

  private rescanActive(): void {
    let n = 0;
    for (const pid of this.active) {
      this.active.delete(pid);
      this.scanProcess(pid);
      if (++n >= RESCAN_BATCH) break;
    }
  }

  /** /proc/PID/root/<path> when it still is the mapped file, else the mapping itself. */
  private openablePath(pid: number, file: MappedFile): string {
    const inRoot = `/proc/${pid}/root${file.path}`;
    if (!file.deleted) {
      try {
        const st = fs.statSync(inRoot);
        const { major, minor } = splitDev(st.dev);
        if (st.ino === file.inode && major === file.major && minor === file.minor) return inRoot;
      } catch {
        /* not there (any more) */
      }
    }
    return `/proc/${pid}/map_files/${file.range}`;
  }

  private inspect(file: string, name: string, executable: boolean): FileVerdict {
    const facts = inspectElf(file, WANTED_SYMBOLS, { symtab: executable });
    if (!facts) return { state: 'none' };
    const plan = planHooks({ name, defined: facts.defined });
    if (plan) return this.attach(file, plan);
    const known = unhookableLibrary(name);
    if (known) return { state: 'unhookable', path: file, ...known };
    if (!executable) return { state: 'none' };
    const found = new Set<string>();
    for (const section of MARKER_SECTIONS) {
      if (!facts.sectionNames.has(section)) continue;
      const needles = EXECUTABLE_MARKERS.filter((m) => m.section === section).map((m) => m.marker);
      for (const hit of sectionMarkers(file, section, needles)) found.add(hit);
    }
    const unhookable = unhookableExecutable(found);
    return unhookable ? { state: 'unhookable', path: file, ...unhookable } : { state: 'none' };
  }

  /**
   * uprobe_multi links where the kernel has them (6.6+): three per file, whatever the number of functions,
   * and detached in one grace period each (a perf event uprobe waits for one under a global mutex at
   * detach: 20 of them made `run` 2 s longer). Else one uprobe per function, libbpf resolving the symbol.
   */
  private multi: boolean | null = null;

  private attachLinks(file: string, plan: HookPlan, links: number[]): void {
    const data = plan.probes.filter((p) => !p.free);
    const free = plan.probes.filter((p) => p.free);
    const offsets = (ps: typeof data) => ps.map((p) => p.offset ?? 0);
    if (this.multi !== false && plan.probes.every((p) => p.offset)) {
      try {
        const m = TLS_PROGRAMS.multi;
        links.push(this.target.attachUprobeMulti(m.enter, file, offsets(data), { cookies: data.map((p) => p.fn) }));
        links.push(this.target.attachUprobeMulti(m.return, file, offsets(data), { retprobe: true, cookies: data.map((p) => p.fn) }));
        if (free.length) links.push(this.target.attachUprobeMulti(m.free, file, offsets(free)));
        this.multi = true;
        return;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (this.multi === true || (code !== 'EINVAL' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS')) throw err;
        for (const link of links.splice(0)) this.target.detach(link);
        this.multi = false; // a kernel before 6.6
      }
    }
    const p = TLS_PROGRAMS.probe;
    for (const probe of free) links.push(this.target.attachUprobe(p.free, file, probe.symbol, {}));
    for (const probe of data) {
      links.push(this.target.attachUprobe(p.enter, file, probe.symbol, { cookie: probe.fn }));
      links.push(this.target.attachUprobe(p.return, file, probe.symbol, { retprobe: true, cookie: probe.fn }));
    }
  }

  private attach(file: string, plan: HookPlan): FileVerdict {
    if (this.unavailable !== null) return { state: 'failed', library: plan.library, path: file, error: this.unavailable };
    const links: number[] = [];
    try {
      this.attachLinks(file, plan, links);
    } catch (err) {
      // half a library hooked is worse than none (an entry without its return): undo
      for (const link of links) this.target.detach(link);
      const error = errorText(err);
      if (links.length === 0 && this.files.size === 0 && !fs.existsSync('/sys/bus/event_source/devices/uprobe')) this.unavailable = error;
      this.log(`proctap: TLS plaintext: cannot hook ${plan.library} in ${file}: ${error}`);
      return { state: 'failed', library: plan.library, path: file, error };
    }
    return { state: 'hooked', library: plan.library, path: file, links: links.length };
  }
}

/** The file id (major:minor:inode, as /proc/PID/maps names files) of a regular file at a path in
 *  proctap's own view, or null. */
function regularFileId(file: string): string | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return null;
  }
  if (!st.isFile()) return null;
  const { major, minor } = splitDev(st.dev);
  return fileId(major, minor, st.ino);
}

function readLink(p: string): string | null {
  try {
    return fs.readlinkSync(p);
  } catch {
    return null;
  }
}

function readComm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** The file a command name runs (as execvp finds it on PATH), or null. */
export function commandExecutable(argv0: string, searchPath: string | undefined): string | null {
  const candidates = argv0.includes('/') ? [argv0] : (searchPath ?? '/usr/local/bin:/usr/bin:/bin').split(':').map((dir) => path.join(dir || '.', argv0));
  for (const file of candidates) {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return path.resolve(file);
    } catch {
      /* next */
    }
  }
  return null;
}
