// SPDX-License-Identifier: MIT
// End-to-end harness: loopback servers the workloads talk to, and a runner for the real proctap CLI.
// Traffic goes only to 127.0.0.1 and ::1.
import { spawn, spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before } from 'node:test';
import type { Report, Traffic } from '../../src/schema/report';

export const ROOT = path.resolve(__dirname, '../../..');
export const PROCTAP = path.join(ROOT, 'bin/proctap');
export const NETLOAD = path.join(ROOT, 'test/workloads/netload.py');
/** `PROCTAP_TEST_BACKEND=kprobe|fentry|tracepoint|auto` runs every `proctap run` of the suite with that `--backend`. */
export const TEST_BACKEND = process.env.PROCTAP_TEST_BACKEND || undefined;

/** The backend reports must name: the forced one, else the one `proctap doctor --json` says `run` would use. */
export function expectedBackend(): string {
  if (TEST_BACKEND && TEST_BACKEND !== 'auto') return TEST_BACKEND;
  const r = spawnSync(PROCTAP, ['doctor', '--json'], { encoding: 'utf8' });
  const doctor = (() => {
    try {
      return JSON.parse(r.stdout) as { selectedBackend: string | null; backends: Array<{ backend: string; reason: string }> };
    } catch {
      return null;
    }
  })();
  if (!doctor?.selectedBackend) {
    const why = doctor ? doctor.backends.map((b) => `${b.backend}: ${b.reason}`).join('; ') : r.stderr;
    throw new Error(`proctap doctor --json selects no backend (exit ${r.status}): ${why}`);
  }
  return doctor.selectedBackend;
}

export interface Servers {
  port: number;
  close(): Promise<void>;
}

/** TCP echo (v4 + v6), UDP echo (v4 + v6); on port+1 a TCP sink that answers with its byte count; on
 *  port+3 a request/response server answering every chunk of n bytes with 40n bytes. port+2 stays closed. */
export async function startServers(): Promise<Servers> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const closers: Array<() => Promise<void>> = [];
    try {
      for (const host of ['127.0.0.1', '::1']) {
        const echo = net.createServer((s) => s.pipe(s).on('error', () => {}));
        await listenTcp(echo, port, host);
        closers.push(() => new Promise((r) => echo.close(() => r())));
        const sink = net.createServer((s) => {
          let n = 0;
          s.on('data', (d) => (n += d.length)).on('end', () => {
            const b = Buffer.alloc(8);
            b.writeBigUInt64LE(BigInt(n));
            s.end(b);
          }).on('error', () => {});
        });
        await listenTcp(sink, port + 1, host);
        closers.push(() => new Promise((r) => sink.close(() => r())));
        const rr = net.createServer((s) => s.on('data', (d) => s.write(Buffer.alloc(d.length * 40, 0x72))).on('error', () => {}));
        await listenTcp(rr, port + 3, host);
        closers.push(() => new Promise((r) => rr.close(() => r())));
        const udp = host === '::1' ? dgram.createSocket({ type: 'udp6', ipv6Only: true }) : dgram.createSocket('udp4');
        udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
        await new Promise<void>((resolve, reject) => {
          udp.once('error', reject);
          udp.bind(port, host, () => resolve());
        });
        closers.push(() => new Promise((r) => udp.close(() => r())));
      }
      return { port, close: async () => void (await Promise.all(closers.map((c) => c()))) };
    } catch {
      await Promise.all(closers.map((c) => c()));
    }
  }
  throw new Error('no free port pair for the test servers');
}

function listenTcp(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, ipv6Only: host === '::1' }, () => resolve());
  });
}

export interface ProctapRun {
  code: number | null;
  stdout: string;
  stderr: string;
  report: Report | null;
  wallMs: number;
}

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-test-'));
}

/** Runs `proctap run --json F -q ARGS` asynchronously (the test's own servers keep serving). */
export function proctapRun(args: string[], opts: { json?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<ProctapRun> {
  const dir = tempDir();
  const jsonPath = path.join(dir, 'report.json');
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const full = opts.json === false ? [...backend, ...args] : [...backend, '--json', jsonPath, ...args];
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(PROCTAP, ['run', ...full], { env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
      const report = fs.existsSync(jsonPath) ? (JSON.parse(fs.readFileSync(jsonPath, 'utf8')) as Report) : null;
      fs.rmSync(dir, { recursive: true, force: true });
      resolve({ code, stdout, stderr, report, wallMs });
    });
  });
}

export interface WorkloadCounts {
  pid: number;
  ppid: number;
  tcp: Traffic;
  udp: Traffic;
}

export async function runWorkload(scenario: string, extra: string[], port: number): Promise<{ run: ProctapRun; counts: WorkloadCounts[] }> {
  const dir = tempDir();
  const out = path.join(dir, 'counts.jsonl');
  fs.chmodSync(dir, 0o777);
  const run = await proctapRun(['-q', '--', 'python3', NETLOAD, scenario, '--out', out, '--port', String(port), ...extra]);
  const counts = fs.existsSync(out)
    ? fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as WorkloadCounts)
    : [];
  fs.rmSync(dir, { recursive: true, force: true });
  return { run, counts };
}

/** Names of loaded BPF programs (bpftool), to prove nothing of ours stays loaded. */
export function loadedProgramNames(): string[] {
  const r = spawnSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bpftool prog show failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Array<{ name?: string }>).map((p) => p.name ?? '');
}

export function linkCount(): number {
  const r = spawnSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bpftool link show failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as unknown[]).length;
}

export function proctapCgroups(): string[] {
  const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  const line = mountinfo.split('\n').find((l) => l.includes(' - cgroup2 '));
  if (!line) return [];
  const mount = line.split(' ')[4];
  return fs.readdirSync(mount).filter((n) => n.startsWith('proctap-'));
}

export interface LoopbackFixture {
  /** The loopback servers of startServers(), up for the whole test file. */
  servers: Servers;
  /** A temporary directory every user may write to (the traced command may run as the sudo caller). */
  dir: string;
}

/** Registers before/after hooks that start the loopback servers and make a temp dir, then clean up. */
export function loopbackFixture(): LoopbackFixture {
  const fixture = {} as LoopbackFixture;
  before(async () => {
    fixture.servers = await startServers();
    fixture.dir = tempDir();
    fs.chmodSync(fixture.dir, 0o777);
  });
  after(async () => {
    await fixture.servers.close();
    fs.rmSync(fixture.dir, { recursive: true, force: true });
  });
  return fixture;
}

/** The first match of `pattern` in what `stream` prints (20 s at most): to wait for a process's "ready". */
export function lineFrom(stream: NodeJS.ReadableStream, pattern: RegExp, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${text}`)), 20000);
    stream.on('data', (d) => {
      text += d;
      const m = pattern.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
  });
}
