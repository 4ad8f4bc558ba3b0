// SPDX-License-Identifier: MIT
// Network namespaces, veth pairs and host state snapshots for the e2e tests of the live capture and
// conntrack mechanisms. Everything created is named with "ptlive" and this test process's pid.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';

export const SUFFIX = String(process.pid % 100000);

/** Runs a command; throws with its stderr when it fails. */
export function sh(cmd: string, ...args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** What must be identical before and after a test. */
export function hostState(): { links: string; netns: string; ruleset: string; forwarding: string } {
  return {
    links: sh('ip', '-br', 'link').split('\n').map((l) => l.split(/\s+/).slice(0, 2).join(' ')).sort().join('\n'),
    netns: sh('ip', 'netns', 'list'),
    ruleset: sh('nft', 'list', 'ruleset'),
    forwarding: fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8'),
  };
}

/** A 10.x.y.0/24 no address or route of this host uses yet (x in 200..249). */
export function freeSubnet(): string {
  const inUse = sh('ip', '-4', 'route', 'show', 'table', 'all') + sh('ip', '-4', 'addr');
  for (let i = 0; i < 100; i++) {
    const prefix = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`;
    if (!inUse.includes(`${prefix}.`)) return prefix;
  }
  throw new Error('no free 10.x.y.0/24 for the test');
}

export interface VethNamespace {
  name: string;
  path: string;
  hostIf: string;
  nsIf: string;
  hostAddress: string;
  nsAddress: string;
}

/** A netns linked to the host by a veth pair: host end `${base}` + "h", namespace end + "n", a /30. */
export function createVethNamespace(tag: string, prefix: string, quad: number): VethNamespace {
  const name = `ptlive-${tag}-${SUFFIX}`;
  const hostIf = `ptlive${tag}${SUFFIX}h`;
  const nsIf = `ptlive${tag}${SUFFIX}n`;
  if (hostIf.length > 15) throw new Error(`interface name too long: ${hostIf}`);
  const hostAddress = `${prefix}.${quad * 4 + 1}`;
  const nsAddress = `${prefix}.${quad * 4 + 2}`;
  sh('ip', 'netns', 'add', name);
  try {
    sh('ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name);
    sh('ip', 'addr', 'add', `${hostAddress}/30`, 'dev', hostIf);
    sh('ip', 'link', 'set', hostIf, 'up');
    sh('ip', '-n', name, 'addr', 'add', `${nsAddress}/30`, 'dev', nsIf);
    sh('ip', '-n', name, 'link', 'set', nsIf, 'up');
    sh('ip', '-n', name, 'link', 'set', 'lo', 'up');
  } catch (err) {
    spawnSync('ip', ['netns', 'del', name]);
    throw err;
  }
  return { name, path: `/run/netns/${name}`, hostIf, nsIf, hostAddress, nsAddress };
}

/** Deleting the namespace removes both veth ends with it. */
export function deleteNamespace(ns: VethNamespace): void {
  spawnSync('ip', ['netns', 'del', ns.name]);
  spawnSync('ip', ['link', 'del', ns.hostIf], { stdio: 'ignore' });
}

/** A Python program inside the namespace; resolves its stdout lines one by one. */
export class NsProgram {
  readonly child: ChildProcessWithoutNullStreams;
  private lines: string[] = [];
  private waiters: Array<(line: string) => void> = [];
  private stderr = '';
  private buffered = '';

  constructor(ns: VethNamespace, program: string, args: string[] = []) {
    this.child = spawn('ip', ['netns', 'exec', ns.name, 'python3', '-u', '-c', program, ...args]);
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => {
      this.buffered += d;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    this.child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
  }

  /** The next line it prints; rejects if it exits first. */
  nextLine(): Promise<string> {
    const ready = this.lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`namespace program exited (${code}) before printing: ${this.stderr.trim()}`));
      this.child.once('exit', onExit);
      this.waiters.push((line) => {
        this.child.off('exit', onExit);
        resolve(line);
      });
    });
  }

  async exit(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    return new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** Names of this process's threads (/proc/self/task/N/comm). */
export function threadNames(): string[] {
  return fs.readdirSync('/proc/self/task').map((t) => {
    try {
      return fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
    } catch {
      return '';
    }
  });
}

/** Whether a thread named `name` is still listed after a bounded wait: a joined thread has exited, but
 *  the kernel may list it in /proc/self/task for a moment longer until it is reaped. */
export async function threadStillListed(name: string): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if (!threadNames().includes(name)) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
