// SPDX-License-Identifier: MIT
// Real servers from Debian packages for the L7 end-to-end tests (issue 15), each started by the test on
// a free loopback port (dnsmasq: inside a network namespace the test made) and stopped by it, with their
// own counters read back: PostgreSQL's pg_stat_statements and server log, dnsmasq's query log, nginx's
// access log with the TLS variables. Plus what the tests share: the L7 part of a report and of the
// NDJSON events, and a snapshot of the machine state that must be the same before and after.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { L7Report } from '../../src/schema/l7';
import type { Report } from '../../src/schema/report';
import { PROCTAP, TEST_BACKEND, lineFrom, linkCount, loadedProgramNames, proctapCgroups, tempDir } from './harness';
import { createVethNamespace, deleteNamespace, freeSubnet, hostState, sh, type VethNamespace } from './netns-fixture';
import { freePort, waitForPort } from './servers';

/** The server's programs: Debian puts each major version under /usr/lib/postgresql/N (the newest here). */
function pgBin(): string {
  const versions = fs.existsSync('/usr/lib/postgresql') ? fs.readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  if (versions.length === 0) throw new Error('no PostgreSQL server under /usr/lib/postgresql (make deps)');
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

/** uid and gid of a system user. */
function account(user: string): { uid: number; gid: number } {
  return { uid: Number(sh('id', '-u', user).trim()), gid: Number(sh('id', '-g', user).trim()) };
}

/** Whether a process (any state but a zombie) is there. */
export function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Sends `signal`, waits for the exit (SIGKILL after 5 s). */
async function stopChild(child: ChildProcess, exited: Promise<void>, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => child.once('close', () => resolve()));
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL

export interface Postgres {
  pid: number;
  port: number;
  dir: string;
  /** psql -At as the postgres superuser on TCP, untraced: its output; throws on failure. */
  psql(database: string, sql: string): string;
  /** Per normalised query text as pg_stat_statements has it: calls in `database` since the last reset. */
  statements(database: string): Array<{ query: string; calls: number; rows: number }>;
  /** The server log (log_line_prefix '%e ': each line starts with its SQLSTATE). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * A cluster of its own in a temp dir (initdb as the postgres user, trust auth), listening on
 * 127.0.0.1:PORT only (its Unix socket in the temp dir too), pg_stat_statements preloaded, fsync off.
 * The server runs in the foreground as this test's child: no service of the Debian package is used.
 */
export async function startPostgres(): Promise<Postgres> {
  const PG_BIN = pgBin();
  const dir = tempDir();
  const pg = account('postgres');
  fs.chownSync(dir, pg.uid, pg.gid);
  const data = path.join(dir, 'data');
  const logPath = path.join(dir, 'server.log');
  const init = spawnSync(path.join(PG_BIN, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '-N'], { uid: pg.uid, gid: pg.gid, encoding: 'utf8', cwd: dir });
  if (init.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr || init.error}`);
  }
  const port = await freePort();
  const logFd = fs.openSync(logPath, 'a');
  fs.fchownSync(logFd, pg.uid, pg.gid);
  const settings = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    shared_preload_libraries: 'pg_stat_statements',
    'pg_stat_statements.track': 'top',
    'pg_stat_statements.track_utility': 'on',
    fsync: 'off',
    synchronous_commit: 'off',
    logging_collector: 'off',
    log_destination: 'stderr',
    log_line_prefix: '%e ',
    log_min_error_statement: 'error',
    log_connections: 'on',
  };
  const args = ['-D', data, '-p', String(port), ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  const child = spawn(path.join(PG_BIN, 'postgres'), args, { uid: pg.uid, gid: pg.gid, cwd: dir, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  const exited = exitOf(child);
  const psqlAs = (database: string, sql: string): string => {
    const r = spawnSync('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', database, '-c', sql], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`psql ${database} -c ${sql}: ${r.stderr.trim()}`);
    return r.stdout;
  };
  const stop = async () => {
    await stopChild(child, exited, 'SIGINT'); // fast shutdown
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, 'postgres');
    // listening comes before recovery ends: wait until it takes connections
    for (let i = 0; ; i++) {
      if (spawnSync(path.join(PG_BIN, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port)]).status === 0) break;
      if (i > 200) throw new Error(`postgres is not ready: ${fs.readFileSync(logPath, 'utf8')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    psqlAs('postgres', 'CREATE EXTENSION pg_stat_statements');
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    pid: child.pid!,
    port,
    dir,
    psql: psqlAs,
    statements: (database) =>
      JSON.parse(
        psqlAs('postgres', `SELECT coalesce(json_agg(json_build_object('query', s.query, 'calls', s.calls, 'rows', s.rows)), '[]') FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '${database}'`),
      ) as Array<{ query: string; calls: number; rows: number }>,
    log: () => fs.readFileSync(logPath, 'utf8'),
    stop,
  };
}

// ---------------------------------------------------------------------------------------------------
// dnsmasq

export interface DnsQueryLogged {
  serial: number;
  /** Client address/port as dnsmasq logs it. */
  client: string;
  type: string;
  name: string;
  /** NOERROR or NXDOMAIN, from the reply line ("config NAME is ..."). */
  rcode: string;
  /** The pid that logged it: the main process for UDP, a forked child for each TCP connection. */
  pid: number;
}

export interface Dnsmasq {
  pid: number;
  ns: VethNamespace;
  /** Where it listens (the namespace end of the veth pair), port 53. */
  address: string;
  /** Each query it logged (--log-queries=extra), with its answer code. */
  queries(): DnsQueryLogged[];
  stop(): Promise<void>;
}

/**
 * dnsmasq in a network namespace of its own, linked to the host by a veth pair (a /30 no route of this
 * host uses): it answers the `records` (name → address, A or AAAA by the address's form) and, for
 * `localDomain`, NXDOMAIN for every other name (never forwards: no upstream servers).
 */
export async function startDnsmasq(records: Record<string, string>, localDomain: string): Promise<Dnsmasq> {
  const dir = tempDir();
  fs.chmodSync(dir, 0o755);
  const logPath = path.join(dir, 'dnsmasq.log');
  const ns = createVethNamespace('dns', freeSubnet(), 0);
  const args = [
    'netns', 'exec', ns.name, 'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--no-poll',
    `--listen-address=${ns.nsAddress}`, '--bind-interfaces', '--port=53', '--user=root', '--pid-file=', '--cache-size=0',
    `--local=/${localDomain}/`, ...Object.entries(records).map(([name, address]) => `--address=/${name}/${address}`),
    '--log-queries=extra', `--log-facility=${logPath}`,
  ];
  const child = spawn('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] }); // ip netns exec execs dnsmasq: same pid
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = exitOf(child);
  const stop = async () => {
    await stopChild(child, exited, 'SIGTERM');
    deleteNamespace(ns);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; !/started, version/.test(fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : ''); i++) {
      if (child.exitCode !== null || i > 200) throw new Error(`dnsmasq did not start: ${stderr.trim()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    pid: child.pid!,
    ns,
    address: ns.nsAddress,
    queries: () => parseDnsmasqLog(fs.readFileSync(logPath, 'utf8')),
    stop,
  };
}

/** "dnsmasq[PID]: SERIAL ADDR/PORT query[TYPE] NAME from ADDR" then "... SERIAL ADDR/PORT config NAME is X". */
export function parseDnsmasqLog(text: string): DnsQueryLogged[] {
  const bySerial = new Map<string, DnsQueryLogged>();
  const out: DnsQueryLogged[] = [];
  for (const line of text.split('\n')) {
    const q = /dnsmasq\[(\d+)\]: (\d+) (\S+) query\[(\w+)\] (\S+) from /.exec(line);
    if (q) {
      const entry = { serial: Number(q[2]), client: q[3], type: q[4], name: q[5].toLowerCase(), rcode: '', pid: Number(q[1]) };
      bySerial.set(`${q[1]} ${q[2]} ${q[3]}`, entry);
      out.push(entry);
      continue;
    }
    const a = /dnsmasq\[(\d+)\]: (\d+) (\S+) (?:config|cached|reply) (\S+) is (\S+)/.exec(line);
    if (a) {
      const entry = bySerial.get(`${a[1]} ${a[2]} ${a[3]}`);
      if (entry && entry.rcode === '') entry.rcode = a[5] === 'NXDOMAIN' ? 'NXDOMAIN' : 'NOERROR';
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// nginx with TLS

export interface TlsLogLine {
  /** $connection: the connection's serial number; $connection_requests: its requests so far. */
  connection: number;
  connectionRequests: number;
  serverPort: number;
  method: string;
  uri: string;
  status: number;
  sni: string;
  protocol: string;
  alpn: string;
  httpVersion: string;
  /** $request_length, $bytes_sent: bytes of the request nginx read and of the response it wrote (HTTP/1:
   *  the plaintext, head and body). */
  requestLength: number;
  bytesSent: number;
}

export interface TlsNginx {
  pid: number;
  /** HTTP/1.1 only (ALPN http/1.1), and HTTP/2 too (ALPN h2). */
  port: number;
  h2Port: number;
  dir: string;
  accessLog(): TlsLogLine[];
  addFile(name: string, size: number): void;
  stop(): Promise<void>;
}

/** nginx serving `dir/html` over TLS on two loopback ports, certificate for `name` made here. */
export async function startTlsNginx(name: string): Promise<TlsNginx> {
  const dir = tempDir();
  fs.chmodSync(dir, 0o755); // the worker runs as nobody
  for (const sub of ['html', 'logs', 'tmp']) fs.mkdirSync(path.join(dir, sub), { mode: 0o755 });
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`], { encoding: 'utf8' });
  if (r.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`openssl req: ${r.stderr}`);
  }
  fs.chmodSync(key, 0o644);
  const port = await freePort();
  let h2Port = await freePort();
  while (h2Port === port) h2Port = await freePort();
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${dir}/tmp/${t};`).join(' ');
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `daemon off;
master_process on;
worker_processes 1;
user nobody nogroup;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log;
events { worker_connections 128; }
http {
  log_format tls '$connection $connection_requests $server_port $request_method $request_uri $status $ssl_server_name $ssl_protocol $ssl_alpn_protocol $server_protocol $request_length $bytes_sent';
  access_log ${dir}/logs/access.log tls;
  ${temp}
  server {
    listen 127.0.0.1:${port} ssl;
    listen 127.0.0.1:${h2Port} ssl http2;
    server_name ${name};
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ssl_protocols TLSv1.2 TLSv1.3;
    root ${dir}/html;
  }
}
`,
  );
  const child = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'logs/error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = exitOf(child);
  const stop = async () => {
    await stopChild(child, exited, 'SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, `nginx (${stderr.trim()})`);
    await waitForPort(h2Port, `nginx (${stderr.trim()})`);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    pid: child.pid!,
    port,
    h2Port,
    dir,
    accessLog: () =>
      fs.readFileSync(path.join(dir, 'logs/access.log'), 'utf8').split('\n').filter(Boolean).map((l) => {
        const f = l.split(' ');
        return {
          connection: Number(f[0]), connectionRequests: Number(f[1]), serverPort: Number(f[2]), method: f[3], uri: f[4], status: Number(f[5]),
          sni: f[6], protocol: f[7], alpn: f[8], httpVersion: f[9], requestLength: Number(f[10]), bytesSent: Number(f[11]),
        };
      }),
    addFile: (file, size) => fs.writeFileSync(path.join(dir, 'html', file), Buffer.alloc(size, 0x61), { mode: 0o644 }),
    stop,
  };
}

// ---------------------------------------------------------------------------------------------------
// Machine state and counting

/** What must be identical before and after an L7 test: links, namespaces, nft ruleset, ip_forward,
 *  proctap cgroups, loaded BPF programs and links. */
export function machineState(): Record<string, string> {
  const programs_ = loadedProgramNames().sort();
  return { ...hostState(), cgroups: proctapCgroups().join(' '), bpf: `${programs_.join(' ')}; ${linkCount()} links` };
}

/** The report's L7 part (`--l7`); throws when it has none. */
export function l7Of(report: Report): L7Report {
  if (!report.l7) throw new Error(`the report has no l7 part: ${Object.keys(report).join(' ')}`);
  return report.l7;
}

/** `proctap attach --l7 ... PID`, resolved once attached; `stop()` ends it with SIGINT and gives its report. */
export async function attachL7(pid: number, extra: string[] = []): Promise<{ stop: () => Promise<Report>; stderr: () => string }> {
  const dir = tempDir();
  const json = path.join(dir, 'report.json');
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const proctap = spawn(PROCTAP, ['attach', ...backend, '-q', '--l7', '--json', json, ...extra, String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => proctap.on('close', resolve));
  try {
    await lineFrom(proctap.stderr!, /attached to pid \d+.*\n/, 'proctap to attach');
  } catch (err) {
    proctap.kill('SIGKILL');
    await closed;
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    stderr: () => stderr,
    stop: async () => {
      proctap.kill('SIGINT');
      const code = await closed;
      try {
        if (code !== 0) throw new Error(`proctap attach exited ${code}: ${stderr}`);
        return JSON.parse(fs.readFileSync(json, 'utf8')) as Report;
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Adds `n` under `key`. */
export function bump<K>(m: Map<K, number>, key: K, n = 1): void {
  m.set(key, (m.get(key) ?? 0) + n);
}

/** Lines of an NDJSON file, parsed. */
export function ndjson(file: string): Array<Record<string, unknown>> {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : [];
}
