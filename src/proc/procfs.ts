// SPDX-License-Identifier: MIT
// /proc readers for attach: who a pid is, which sockets it holds, which namespaces it lives in.
// Parsers are pure (text in, data out); readers are thin and return null when the process is gone.
import * as fs from 'node:fs';
import { formatAddress, AF_INET, AF_INET6 } from '../util/net';

export interface ProcStatus {
  name: string;
  ppid: number;
  /** PIDs from the outermost to the innermost PID namespace (NSpid); one entry outside containers. */
  nspid: number[];
}

export function parseProcStatus(text: string): ProcStatus {
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1] ?? '';
  return {
    name: field('Name'),
    ppid: Number(field('PPid')) || 0,
    nspid: field('NSpid').split(/\s+/).filter(Boolean).map(Number),
  };
}

/** The cgroup v2 path ("/system.slice/x.service") from /proc/PID/cgroup text. */
export function parseCgroupV2Path(text: string): string | null {
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  return line ? line.slice(3) : null;
}

export interface ProcNetSocket {
  inode: number;
  proto: 'tcp' | 'udp';
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  /** TCP state number as the kernel prints it (1 = ESTABLISHED, 10 = LISTEN, ...). */
  state: number;
  /** The local address as the kernel holds it (network byte order, IPv4 in the first 4 bytes). */
  localBytes: Uint8Array;
}

/** /proc/net/{tcp,tcp6,udp,udp6}: addresses are hex words in host byte order (little-endian here). */
export function parseProcNet(text: string, proto: 'tcp' | 'udp', family: number): ProcNetSocket[] {
  const decode = (hex: string): { addr: string; port: number; raw: Uint8Array } => {
    const [a, p] = hex.split(':');
    const raw = new Uint8Array(16);
    for (let word = 0; word < (family === AF_INET ? 1 : 4); word++) {
      const value = parseInt(a.slice(word * 8, word * 8 + 8), 16);
      new DataView(raw.buffer).setUint32(word * 4, value, true);
    }
    return { addr: formatAddress(family, raw), port: parseInt(p, 16), raw };
  };
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 10)
    .map((f) => {
      const local = decode(f[1]);
      const remote = decode(f[2]);
      return { inode: Number(f[9]), proto, localAddr: local.addr, localPort: local.port, remoteAddr: remote.addr, remotePort: remote.port, state: parseInt(f[3], 16), localBytes: local.raw };
    });
}

function read(path: string): string | null {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

export function readStatus(pid: number): ProcStatus | null {
  const text = read(`/proc/${pid}/status`);
  return text === null ? null : parseProcStatus(text);
}

/**
 * argv from /proc/PID/cmdline text, as ps reads it: a program that rewrote its title (nginx, redis,
 * postgres, sshd, setproctitle) leaves it in argv[0] followed by NUL or space padding over the rest of
 * the original argument area; that padding is not arguments. (So a last argument's own trailing spaces,
 * or trailing empty arguments, are dropped too, as ps drops them.)
 */
export function parseCmdline(text: string): string[] {
  const end = text.search(/[\0 ]*$/);
  return end === 0 ? [] : text.slice(0, end).split('\0');
}

export function readArgv(pid: number): string[] {
  const text = read(`/proc/${pid}/cmdline`);
  return text ? parseCmdline(text) : [];
}

/** Pids in a /proc/PID/task/TID/children file ("12 34 "). */
export function parseChildren(text: string): number[] {
  return text.split(/\s+/).filter(Boolean).map(Number);
}

/**
 * Children of a process: of every one of its threads (a child's parent is the thread that forked it).
 * null when the kernel has no `children` files (CONFIG_PROC_CHILDREN off) or the process is gone.
 */
export function readChildren(pid: number): number[] | null {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  const children: number[] = [];
  for (const tid of tids) {
    const text = read(`/proc/${pid}/task/${tid}/children`);
    if (text !== null) children.push(...parseChildren(text));
    else if (fs.existsSync(`/proc/${pid}/task/${tid}`)) return null; // the thread lives: no such file
  }
  return children;
}

/** Every process below `pids` now (not the pids themselves), parents before children; `exclude` and
 *  what is below them are left out. */
export function readDescendants(pids: number[], exclude: ReadonlySet<number> = new Set()): Array<{ pid: number; ppid: number }> {
  let byParent: Map<number, number[]> | null = null;
  const childrenOf = (pid: number): number[] => {
    const direct = byParent ? null : readChildren(pid);
    if (direct) return direct;
    // No children files: one scan of every process's parent.
    if (!byParent) {
      byParent = new Map();
      for (const entry of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(entry)) continue;
        const status = readStatus(Number(entry));
        if (status) byParent.set(status.ppid, [...(byParent.get(status.ppid) ?? []), Number(entry)]);
      }
    }
    return byParent.get(pid) ?? [];
  };
  const seen = new Set(pids);
  const out: Array<{ pid: number; ppid: number }> = [];
  const queue = [...pids];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const child of childrenOf(parent)) {
      if (seen.has(child) || exclude.has(child)) continue;
      seen.add(child);
      out.push({ pid: child, ppid: parent });
      queue.push(child);
    }
  }
  return out;
}

export function readCgroupPath(pid: number): string | null {
  const text = read(`/proc/${pid}/cgroup`);
  return text === null ? null : parseCgroupV2Path(text);
}

export function netnsInode(pid: number | 'self'): number | null {
  try {
    const link = fs.readlinkSync(`/proc/${pid}/ns/net`);
    return Number(/\[(\d+)\]/.exec(link)?.[1] ?? NaN) || null;
  } catch {
    return null;
  }
}

/**
 * Network namespaces other than ours that the proc connector may live in (it exists only in the initial
 * one): init's, then those of our ancestors (the shell that ran `ip netns exec` or `nsenter --net`), as
 * /proc/PID/ns/net paths; [] when we are in init's.
 */
export function outerNetnsPaths(): string[] {
  const own = netnsInode('self');
  if (own !== null && own === netnsInode(1)) return [];
  const paths = ['/proc/1/ns/net']; // even where its inode cannot be read: opening it may still work
  const seen = new Set<number | null>([own]);
  for (let pid = process.ppid; pid > 1; pid = readStatus(pid)?.ppid ?? 0) {
    const inode = netnsInode(pid);
    if (inode !== null && !seen.has(inode)) paths.push(`/proc/${pid}/ns/net`);
    seen.add(inode);
  }
  return paths;
}

/** Socket inodes held by a process (its /proc/PID/fd links "socket:[N]"). */
export function socketInodes(pid: number): Set<number> {
  const inodes = new Set<number>();
  let fds: string[] = [];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(Number(m[1]));
    } catch {
      /* closed meanwhile */
    }
  }
  return inodes;
}

/** TCP and UDP sockets a process holds, seen from its own network namespace. */
export function openSockets(pid: number): ProcNetSocket[] {
  const inodes = socketInodes(pid);
  if (inodes.size === 0) return [];
  const all: ProcNetSocket[] = [];
  for (const [file, proto, family] of [
    ['tcp', 'tcp', AF_INET],
    ['tcp6', 'tcp', AF_INET6],
    ['udp', 'udp', AF_INET],
    ['udp6', 'udp', AF_INET6],
  ] as const) {
    const text = read(`/proc/${pid}/net/${file}`);
    if (text) all.push(...parseProcNet(text, proto, family).filter((s) => inodes.has(s.inode)));
  }
  return all;
}

/** Processes whose comm is exactly `name`. */
export function pidsByComm(name: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    if (read(`/proc/${entry}/comm`)?.trimEnd() === name) pids.push(Number(entry));
  }
  return pids;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
