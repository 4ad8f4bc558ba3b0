// SPDX-License-Identifier: MIT
// cgroup v2: find the mount, create the traced command's cgroup, signal/kill it, remove it, and clean up
// after a killed proctap. Directory names carry the owning proctap pid: "proctap-<pid>-<purpose>".
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isAlive } from './procfs';

const PREFIX = 'proctap-';

/** The cgroup2 mount point from /proc/self/mountinfo text (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified). */
export function findCgroup2Mount(mountinfo: string): string | null {
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (fstype !== 'cgroup2') continue;
    const mountPoint = line.slice(0, sep).split(' ')[4];
    return mountPoint.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  }
  return null;
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** The nearest ancestor in another mount namespace than ours (the shell that ran `ip netns exec`). */
function ancestorInOtherMountNamespace(): number | null {
  const ns = (pid: number | 'self') => {
    try {
      return fs.readlinkSync(`/proc/${pid}/ns/mnt`);
    } catch {
      return null;
    }
  };
  const own = ns('self');
  const seen = new Set<number>();
  for (let pid = process.ppid; pid > 0 && !seen.has(pid); ) {
    seen.add(pid);
    const theirs = ns(pid);
    if (theirs !== null && theirs !== own) return pid;
    const ppid = /^PPid:\s*(\d+)$/m.exec(readText(`/proc/${pid}/status`) ?? '')?.[1];
    pid = ppid === undefined ? 0 : Number(ppid);
  }
  return null;
}

/** Where a private cgroup2 mount goes: the empty directory a fresh sysfs has for it. */
export const PRIVATE_CGROUP2_MOUNT = '/sys/fs/cgroup';

/**
 * The cgroup v2 hierarchy, as a path this process can use. `ip netns exec` runs its command in a mount
 * namespace of its own with /sys mounted afresh, without the cgroup2 mount under it. Then, in order:
 * init's mount, through /proc/1/root (a path into init's mount namespace; refused where pid 1 is not
 * ours to inspect); or, when this mount namespace is a child of an ancestor's (a mount made here does not
 * propagate back: ip netns exec makes it a slave), cgroup2 mounted on /sys/fs/cgroup here, where it stays
 * for the namespace's life (the same hierarchy: the cgroup namespace is unchanged).
 */
export function cgroup2Mount(): string {
  const mount = findCgroup2Mount(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  if (mount) return mount;
  const initMount = findCgroup2Mount(readText('/proc/1/mountinfo') ?? '');
  const viaInit = initMount === null ? null : path.join('/proc/1/root', initMount);
  if (viaInit !== null && fs.existsSync(path.join(viaInit, 'cgroup.procs'))) return viaInit;
  const parent = ancestorInOtherMountNamespace();
  if (parent !== null && findCgroup2Mount(readText(`/proc/${parent}/mountinfo`) ?? '') !== null) {
    const r = spawnSync('mount', ['-t', 'cgroup2', 'cgroup2', PRIVATE_CGROUP2_MOUNT], { encoding: 'utf8' });
    if (r.status === 0 && fs.existsSync(path.join(PRIVATE_CGROUP2_MOUNT, 'cgroup.procs'))) return PRIVATE_CGROUP2_MOUNT;
    throw new Error(
      `no cgroup v2 hierarchy in this mount namespace (ip netns exec?), and mounting one on ${PRIVATE_CGROUP2_MOUNT} failed ` +
        `(${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n')[0]}): run proctap as nsenter --net=/run/netns/NAME proctap ..., which keeps the host's mounts`,
    );
  }
  throw new Error('no cgroup v2 hierarchy is mounted (mount one: mount -t cgroup2 none /sys/fs/cgroup)');
}

export function ownedCgroupName(ownerPid: number, purpose: string): string {
  return `${PREFIX}${ownerPid}-${purpose}`;
}

/** Owner pid of a proctap cgroup directory name, or null for anything else. */
export function cgroupOwner(name: string): number | null {
  const m = /^proctap-(\d+)-[a-z0-9-]+$/.exec(name);
  return m ? Number(m[1]) : null;
}

export function createCgroup(mount: string, name: string): string {
  const dir = path.join(mount, name);
  fs.mkdirSync(dir);
  return dir;
}

export function cgroupPids(dir: string): number[] {
  try {
    return fs
      .readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export function isPopulated(dir: string): boolean {
  try {
    return /^populated 1$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
}

export function signalCgroup(dir: string, signal: NodeJS.Signals): void {
  for (const pid of cgroupPids(dir)) {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** SIGKILL every process in the cgroup (cgroup.kill where the kernel has it, 5.14+). */
export function killCgroup(dir: string): void {
  try {
    fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
  } catch {
    signalCgroup(dir, 'SIGKILL');
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Kill whatever is left, wait for the cgroup to empty, remove it. */
export async function removeCgroup(dir: string, timeoutMs = 2000): Promise<void> {
  if (!fs.existsSync(dir)) return;
  if (isPopulated(dir)) killCgroup(dir);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) throw new Error(`cannot remove cgroup ${dir}: ${code}`);
      await sleep(10);
    }
  }
}

/** Removes cgroups left by proctap instances that no longer run (killed with -9). Returns what it removed. */
export async function removeStaleCgroups(mount: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of fs.readdirSync(mount)) {
    const owner = cgroupOwner(name);
    if (owner === null || owner === process.pid || isAlive(owner)) continue;
    const dir = path.join(mount, name);
    await removeCgroup(dir);
    removed.push(dir);
  }
  return removed;
}
