// SPDX-License-Identifier: MIT
// Real servers from Debian packages for the attach tests: nginx (its own prefix, config, access log and
// files in a temp dir) and redis-server, each on a free loopback port, started by the test and stopped by
// it; and small untraced clients that count what they did. Traffic goes to 127.0.0.1 only.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { lineFrom, tempDir } from './harness';

/** A loopback TCP port nobody listens on now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => (c.destroy(), resolve(true)));
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} does not listen on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Children of a process now (its workers). */
export function childrenOf(pid: number): number[] {
  return fs.readdirSync(`/proc/${pid}/task`).flatMap((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number));
}

export interface Nginx {
  /** The master's pid (nginx runs in the foreground: the pid spawned). */
  pid: number;
  port: number;
  dir: string;
  workers: number[];
  /** Access log lines: `$pid $bytes_sent $request_length`. */
  accessLog(): Array<{ pid: number; bytesSent: number; requestLength: number }>;
  /** The access log's lines as written (with `logFormat`, in that format). */
  accessLines(): string[];
  /** A file of `size` bytes served at /NAME. */
  addFile(name: string, size: number): void;
  stop(): Promise<void>;
}

/** `logFormat`: the access log's format instead of `$pid $bytes_sent $request_length` (accessLog() then
 *  reads nothing sensible; accessLines() does). */
export async function startNginx(workers = 2, logFormat = '$pid $bytes_sent $request_length'): Promise<Nginx> {
  const dir = tempDir();
  fs.chmodSync(dir, 0o755); // the workers run as nobody
  const port = await freePort();
  for (const sub of ['html', 'logs', 'tmp']) fs.mkdirSync(path.join(dir, sub), { mode: 0o755 });
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${dir}/tmp/${t};`).join(' ');
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `daemon off;
master_process on;
worker_processes ${workers};
user nobody nogroup;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log;
events { worker_connections 128; }
http {
  log_format counts '${logFormat}';
  access_log ${dir}/logs/access.log counts;
  ${temp}
  keepalive_timeout 30s;
  keepalive_requests 1000;
  server {
    listen 127.0.0.1:${port};
    root ${dir}/html;
  }
}
`,
  );
  const child: ChildProcess = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'logs/error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  try {
    await waitForPort(port, `nginx (${stderr.trim()})`);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  let pids: number[] = [];
  for (let i = 0; i < 100 && pids.length < workers; i++) {
    pids = childrenOf(child.pid!);
    if (pids.length < workers) await new Promise((r) => setTimeout(r, 20));
  }
  return {
    pid: child.pid!,
    port,
    dir,
    workers: pids,
    accessLog: () =>
      fs.readFileSync(path.join(dir, 'logs/access.log'), 'utf8').split('\n').filter(Boolean).map((l) => {
        const [pid, bytesSent, requestLength] = l.split(' ').map(Number);
        return { pid, bytesSent, requestLength };
      }),
    accessLines: () => fs.readFileSync(path.join(dir, 'logs/access.log'), 'utf8').split('\n').filter(Boolean),
    addFile: (name, size) => fs.writeFileSync(path.join(dir, 'html', name), Buffer.alloc(size, 0x61), { mode: 0o644 }),
    stop: async () => {
      child.kill('SIGTERM'); // fast shutdown: workers exit, then the master
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface HttpExchange {
  status: number;
  /** Bytes of the response the client read (head and body). */
  bytes: number;
}

/**
 * One keep-alive HTTP/1.1 connection of an untraced client: each GET is sent whole, its response read
 * whole (Content-Length) before the next; `pauseMs` between them. Returns what it exchanged and how
 * long the connection lasted for the client: from connect() to close().
 */
export async function keepAliveClient(port: number, paths: string[], pauseMs = 0): Promise<{ exchanges: HttpExchange[]; sent: number } & ClientTimes> {
  const started = now();
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const connected = now();
  let buffer = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  socket.on('data', (d) => {
    buffer = Buffer.concat([buffer, d]);
    wake?.();
  });
  const more = () => new Promise<void>((resolve) => (wake = resolve));
  const exchanges: HttpExchange[] = [];
  let sent = 0;
  for (const [i, p] of paths.entries()) {
    if (i > 0 && pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    const request = `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: proctap-test\r\n\r\n`;
    socket.write(request);
    sent += Buffer.byteLength(request);
    let end: number;
    while ((end = buffer.indexOf('\r\n\r\n')) < 0) await more();
    const head = buffer.subarray(0, end).toString();
    const length = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0);
    while (buffer.length < end + 4 + length) await more();
    exchanges.push({ status: Number(head.split(' ')[1]), bytes: end + 4 + length });
    buffer = buffer.subarray(end + 4 + length);
  }
  return { exchanges, sent, ...(await close(socket, started, connected)) };
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

/** How long a connection lasted for its client, as bounds of what the server saw: at most from before
 *  connect() to the close event, at least from the connect event (the server had the SYN) to end(). */
export interface ClientTimes {
  localPort: number;
  lastedMs: number;
  atLeastMs: number;
}

async function close(socket: net.Socket, started: number, connected: number): Promise<ClientTimes> {
  const localPort = socket.localPort!;
  const ending = now();
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.end();
  await closed;
  return { localPort, lastedMs: now() - started, atLeastMs: ending - connected };
}

export interface Redis {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<Redis> {
  const dir = tempDir();
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--logfile', ''], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  await lineFrom(child.stdout!, /Ready to accept connections/, 'redis-server');
  return {
    pid: child.pid!,
    port,
    stop: async () => {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An untraced redis client on one connection: `n` PINGs, each answered before the next; what it sent,
 *  received, and how long the connection lasted for it. */
export async function redisPings(port: number, n: number): Promise<{ sent: number; received: number } & ClientTimes> {
  const started = now();
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const connected = now();
  const command = '*1\r\n$4\r\nPING\r\n';
  let received = 0;
  let pending = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  socket.on('data', (d) => {
    received += d.length;
    pending = Buffer.concat([pending, d]);
    wake?.();
  });
  for (let i = 0; i < n; i++) {
    socket.write(command);
    while (pending.indexOf('\r\n') < 0) await new Promise<void>((resolve) => (wake = resolve));
    pending = pending.subarray(pending.indexOf('\r\n') + 2);
  }
  return { sent: n * command.length, received, ...(await close(socket, started, connected)) };
}
