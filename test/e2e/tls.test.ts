// SPDX-License-Identifier: MIT
// TLS end to end, with real programs from Debian against TLS servers on loopback (certificate made here
// with openssl): `run -o` captures that tshark decrypts with no key file (curl, Python's ssl, wget on
// GnuTLS); TLS plaintext records equal to the plaintext the programs themselves sent and received, tied
// to their connection, for `run` (curl, Python) and for `attach` (a Python TLS server, nginx against its
// access log); the note for a TLS library that cannot be hooked (a static, stripped OpenSSL client); the
// key log channel's modes, and that it is gone after the run, also after kill -9 and `proctap cleanup`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runTraced } from '../../src/trace/run';
import { attachTraced } from '../../src/trace/attach';
import type { DataRecord, TraceRecord } from '../../src/kernel/records';
import { KEYLOG_BASE, KEYLOG_PREFIX } from '../../src/tls/keylog';
import { PROCTAP, ROOT, TEST_BACKEND, lineFrom, tempDir } from './harness';
import { freePort } from './servers';

const PYTHON = '/usr/bin/python3'; // Debian's, with the system OpenSSL
const SERVER = path.join(ROOT, 'test/workloads/tls_server.py');
const CLIENT = path.join(ROOT, 'test/workloads/tls_client.py');
const STATIC_CLIENT_SRC = path.join(ROOT, 'test/workloads/tls_static_client.c');

const fx = { dir: '', cert: '', key: '', port: 0, serverLog: '', server: null as ChildProcess | null };

before(async () => {
  fx.dir = tempDir();
  fs.chmodSync(fx.dir, 0o755);
  fx.cert = path.join(fx.dir, 'cert.pem');
  fx.key = path.join(fx.dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', fx.key, '-out', fx.cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  fs.chmodSync(fx.key, 0o644); // nginx workers run as nobody
  fx.serverLog = path.join(fx.dir, 'server.jsonl');
  fx.port = await freePort();
  fx.server = spawn(PYTHON, [SERVER, '--port', String(fx.port), '--cert', fx.cert, '--key', fx.key, '--out', fx.serverLog], { stdio: ['ignore', 'pipe', 'inherit'] });
  await lineFrom(fx.server.stdout!, /ready/, 'the TLS server');
});

after(() => {
  fx.server?.kill();
  fs.rmSync(fx.dir, { recursive: true, force: true });
});

interface Connection {
  peerPort: number;
  received: Buffer;
  sent: Buffer;
}

/** The server's own record of each connection, waiting for the one from `peerPort` to be written. */
async function serverConnection(peerPort: number): Promise<Connection> {
  for (let i = 0; i < 100; i++) {
    const lines = fs.existsSync(fx.serverLog) ? fs.readFileSync(fx.serverLog, 'utf8').split('\n').filter(Boolean) : [];
    for (const l of lines) {
      const c = JSON.parse(l) as { peerPort: number; received: string; sent: string };
      if (c.peerPort === peerPort) return { peerPort, received: Buffer.from(c.received, 'hex'), sent: Buffer.from(c.sent, 'hex') };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the server logged no connection from port ${peerPort}`);
}

const log: string[] = [];
const engineBase = {
  backend: (TEST_BACKEND ?? 'auto') as 'auto',
  intervalMs: 100,
  ringBufferBytes: 8 << 20,
  version: 'test',
  log: (line: string) => log.push(line),
};

/** Records kept for the assertions: data records copied (their bytes view the ring batch). */
function recorder(): { records: TraceRecord[]; onRecord: (r: TraceRecord) => void } {
  const records: TraceRecord[] = [];
  return { records, onRecord: (r) => records.push(r.type === 'data' ? { ...r, bytes: Buffer.from(r.bytes) } : r) };
}

/** TLS plaintext of one direction, in stream order, checked to be gap-free from offset 0. */
function stream(records: DataRecord[], direction: 'tx' | 'rx'): Buffer {
  const parts = records.filter((r) => r.direction === direction).sort((a, b) => a.offset - b.offset);
  let at = 0;
  for (const r of parts) {
    assert.equal(r.offset, at, `${direction} record at offset ${r.offset}, expected ${at}`);
    assert.equal(r.bytes.length, Math.min(r.length, 4096), 'captured bytes');
    at += r.length;
  }
  return Buffer.concat(parts.map((r) => r.bytes));
}

const tlsData = (records: TraceRecord[], pid: number) => records.filter((r): r is DataRecord => r.type === 'data' && r.source === 'tls' && r.tgid === pid);

/** The socket cookie of the connection from local port `port` to the server, from the flow records. */
function cookieOf(records: TraceRecord[], pid: number, localPort: number, remotePort: number): bigint {
  const flows = records.filter((r) => r.type === 'flow' && r.key.tgid === pid && r.localPort === localPort && r.key.remotePort === remotePort);
  assert.ok(flows.length > 0, `no flow of pid ${pid} ${localPort} -> ${remotePort}`);
  return (flows[0] as Extract<TraceRecord, { type: 'flow' }>).key.cookie;
}

test('run: TLS plaintext of curl and of Python equals what the server received and sent, tied to the connection', async () => {
  for (const argv of [
    ['curl', '-sk', '--http1.1', '-o', '/dev/null', '-o', '/dev/null', `https://127.0.0.1:${fx.port}/100`, `https://127.0.0.1:${fx.port}/6000`, '-w', '%{local_port}\n'],
    [PYTHON, CLIENT, String(fx.port), '10', '5000', '0'],
  ]) {
    const rec = recorder();
    const out = path.join(fx.dir, 'out.txt');
    const result = await runTraced({ ...engineBase, argv: ['sh', '-c', '"$@" > ' + out, 'sh', ...argv], credentials: null, onRecord: rec.onRecord });
    assert.equal(result.exitCode, 0, `${argv[0]}: ${log.join('\n')}`);
    const text = fs.readFileSync(out, 'utf8').trim();
    const localPort = argv[0] === 'curl' ? Number(text.split('\n')[0]) : (JSON.parse(text) as { localPort: number }).localPort;
    const execd = rec.records.find((r) => r.type === 'exec' && r.argv[0] === argv[0]);
    assert.ok(execd, `${argv[0]} exec record`);
    const pid = execd.tgid;
    const server = await serverConnection(localPort);
    const data = tlsData(rec.records, pid);
    assert.ok(data.length >= 4, `${argv[0]}: TLS data records (${data.length})`);
    const cookie = cookieOf(rec.records, pid, localPort, fx.port);
    for (const r of data) {
      assert.equal(r.key.cookie, cookie, `${argv[0]}: record tied to its connection`);
      assert.equal(r.key.remotePort, fx.port);
    }
    // the server's 6000- and 5000-byte bodies are longer than a record holds: compare record by record
    const tx = stream(data, 'tx');
    assert.deepEqual(tx, server.received, `${argv[0]}: plaintext sent`);
    const rx = data.filter((r) => r.direction === 'rx').sort((a, b) => a.offset - b.offset);
    for (const r of rx) assert.deepEqual(r.bytes, server.sent.subarray(r.offset, r.offset + r.bytes.length), `${argv[0]}: plaintext received at ${r.offset}`);
    assert.equal(rx.reduce((n, r) => n + r.length, 0), server.sent.length, `${argv[0]}: plaintext bytes received`);
    assert.equal(stream(data, 'rx').length, rx.reduce((n, r) => n + r.bytes.length, 0));
    assert.ok(!result.report.notes.some((n) => n.includes('TLS')), `no TLS note: ${result.report.notes.join(' | ')}`);
  }
});

test('run -o: tshark decrypts the capture of curl, Python and wget (GnuTLS) by itself; the key log channel is gone', async () => {
  const clients: Array<{ name: string; argv: string[]; paths: string[] }> = [
    { name: 'curl', argv: ['curl', '-sk', '--http1.1', '-o', '/dev/null', '-o', '/dev/null', `https://127.0.0.1:${fx.port}/11`, `https://127.0.0.1:${fx.port}/22`], paths: ['/11', '/22'] },
    { name: 'python', argv: [PYTHON, CLIENT, String(fx.port), '33', '44', '55'], paths: ['/33', '/44', '/55'] },
    { name: 'wget', argv: ['wget', '-q', '--no-check-certificate', '-O', '/dev/null', `https://127.0.0.1:${fx.port}/66`], paths: ['/66'] },
  ];
  for (const c of clients) {
    const pcap = path.join(fx.dir, `${c.name}.pcapng`);
    const r = spawnSync(PROCTAP, ['run', ...(TEST_BACKEND ? ['--backend', TEST_BACKEND] : []), '-q', '-o', pcap, '--', 'sh', '-c', 'echo "$SSLKEYLOGFILE"; "$@" >/dev/null', 'sh', ...c.argv], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${c.name}: ${r.stderr}`);
    const channel = r.stdout.trim();
    assert.match(channel, new RegExp(`^${KEYLOG_BASE}/${KEYLOG_PREFIX}\\d+-[0-9a-f]+/sslkeylog$`));
    assert.equal(fs.existsSync(path.dirname(channel)), false, `${c.name}: key log channel removed`);
    const t = spawnSync('tshark', ['-r', pcap, '-Y', 'http.request', '-T', 'fields', '-e', 'http.request.uri'], { encoding: 'utf8' });
    assert.equal(t.status, 0, t.stderr);
    assert.deepEqual(t.stdout.trim().split('\n'), c.paths, `${c.name}: decrypted requests (${spawnSync('tshark', ['-r', pcap], { encoding: 'utf8' }).stdout})`);
    const resp = spawnSync('tshark', ['-r', pcap, '-Y', 'http.response.code == 200', '-T', 'fields', '-e', 'http.content_length'], { encoding: 'utf8' });
    assert.deepEqual(resp.stdout.trim().split('\n'), c.paths.map((p) => p.slice(1)), `${c.name}: decrypted responses`);
    // without the key log, the same kind of capture shows no HTTP at all
    const plain = path.join(fx.dir, `${c.name}-nokeylog.pcapng`);
    assert.equal(spawnSync(PROCTAP, ['run', '-q', '--no-tls-keylog', '-o', plain, '--', ...c.argv], { stdio: 'ignore' }).status, 0);
    assert.equal(spawnSync('tshark', ['-r', plain, '-Y', 'http'], { encoding: 'utf8' }).stdout.trim(), '', `${c.name}: encrypted without the key log`);
  }
});

test('run -o: the key log channel is a 0600 FIFO in a 0700 directory of the command\'s user, removed after kill -9 by proctap cleanup', async () => {
  const nobody = Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim());
  const pcap = path.join(fx.dir, 'modes.pcapng');
  const r = spawnSync(PROCTAP, ['run', '-q', '-u', 'nobody', '--force', '-o', pcap, '--', 'sh', '-c', 'stat -c "%a %u %F" "$SSLKEYLOGFILE" "${SSLKEYLOGFILE%/*}"; echo "$NODE_OPTIONS"'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [fifo, dir, nodeOptions] = r.stdout.trim().split('\n');
  assert.equal(fifo, `600 ${nobody} fifo`);
  assert.equal(dir, `700 ${nobody} directory`);
  assert.match(nodeOptions, /^--tls-keylog=\/run\/proctap\/keylog-\d+-[0-9a-f]+\/sslkeylog$/);

  const proctap = spawn(PROCTAP, ['run', '-q', '--force', '-o', pcap, '--', 'sleep', '30'], { stdio: 'ignore' });
  const mine = () => (fs.existsSync(KEYLOG_BASE) ? fs.readdirSync(KEYLOG_BASE).filter((n) => n.startsWith(`${KEYLOG_PREFIX}${proctap.pid}-`)) : []);
  for (let i = 0; i < 200 && mine().length === 0; i++) await new Promise((res) => setTimeout(res, 25));
  const [left] = mine();
  assert.ok(left, 'the running trace has its channel');
  const closed = new Promise((res) => proctap.on('close', res));
  proctap.kill('SIGKILL');
  await closed;
  assert.ok(fs.existsSync(path.join(KEYLOG_BASE, left)), 'SIGKILL leaves the (empty) channel behind');
  const c = spawnSync(PROCTAP, ['cleanup'], { encoding: 'utf8' });
  assert.equal(c.status, 0, c.stderr);
  assert.match(c.stdout, new RegExp(`${KEYLOG_PREFIX}${proctap.pid}-`));
  assert.equal(fs.existsSync(path.join(KEYLOG_BASE, left)), false, 'removed by proctap cleanup');
});

test('run: a statically linked, stripped OpenSSL client gets the note, and no plaintext', async () => {
  const exe = path.join(fx.dir, 'tls_static_client');
  const cc = spawnSync('gcc', ['-static', '-O1', '-o', exe, STATIC_CLIENT_SRC, '-lssl', '-lcrypto'], { encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
  assert.equal(spawnSync('strip', [exe]).status, 0);
  const rec = recorder();
  const result = await runTraced({ ...engineBase, argv: [exe, '127.0.0.1', String(fx.port), 'GET /7 HTTP/1.1\r\nHost: x\r\n\r\n'], credentials: null, onRecord: rec.onRecord });
  assert.equal(result.exitCode, 0, log.join('\n'));
  const pid = result.report.processes[0].pid;
  assert.equal(tlsData(rec.records, pid).length, 0);
  assert.ok(result.report.processes[0].tcp.txBytes > 0, 'its (encrypted) bytes are counted at the socket');
  const note = result.report.notes.find((n) => n.startsWith('TLS plaintext not captured'));
  assert.equal(note, `TLS plaintext not captured for pid ${pid} (tls_static_clie): it uses OpenSSL (static) (linked in without SSL_read/SSL_write symbols).`);
});

test('attach: a running Python TLS server\'s plaintext equals what its clients sent and received, tied to each connection', async () => {
  const rec = recorder();
  let attached = () => {};
  const ready = new Promise<void>((res) => (attached = res));
  const trace = attachTraced({
    ...engineBase,
    log: (line) => {
      log.push(line);
      if (/attached to pid/.test(line)) attached();
    },
    pids: [fx.server!.pid!],
    followChildren: true,
    durationMs: 4000,
    onRecord: rec.onRecord,
  });
  await ready;
  const clients = [['7', '3000'], ['4500']].map((sizes) => spawnSync(PYTHON, [CLIENT, String(fx.port), ...sizes], { encoding: 'utf8' }));
  const { report } = await trace;
  assert.equal(report.mode, 'attach');
  const pid = fx.server!.pid!;
  for (const c of clients) {
    assert.equal(c.status, 0, c.stderr);
    const client = JSON.parse(c.stdout) as { localPort: number; sent: string; received: string };
    const cookie = cookieOf(rec.records, pid, fx.port, client.localPort);
    const data = tlsData(rec.records, pid).filter((r) => r.key.cookie === cookie);
    assert.ok(data.length > 0, 'plaintext tied to the accepted connection');
    assert.ok(data.every((r) => r.key.remotePort === client.localPort));
    assert.deepEqual(stream(data, 'rx'), Buffer.from(client.sent, 'hex'), 'the server read what the client sent');
    const sent = Buffer.from(client.received, 'hex');
    const tx = data.filter((r) => r.direction === 'tx');
    for (const r of tx) assert.deepEqual(r.bytes, sent.subarray(r.offset, r.offset + r.bytes.length));
    assert.equal(tx.reduce((n, r) => n + r.length, 0), sent.length, 'the server wrote what the client received');
  }
  assert.ok(report.notes.some((n) => n.startsWith('The capture stays encrypted')) === false, 'no capture, no capture note');
});

test('attach: nginx with TLS: requests in the plaintext equal its access log, bytes equal what the clients saw', async () => {
  const prefix = path.join(fx.dir, 'nginx');
  fs.mkdirSync(path.join(prefix, 'html'), { recursive: true, mode: 0o755 });
  fs.writeFileSync(path.join(prefix, 'html', 'index.html'), 'hello from nginx\n');
  const port = await freePort();
  const accessLog = path.join(prefix, 'access.log');
  fs.writeFileSync(
    path.join(prefix, 'nginx.conf'),
    `daemon off; master_process on; worker_processes 1; pid ${prefix}/nginx.pid; error_log ${prefix}/error.log;
events { worker_connections 64; }
http { access_log ${accessLog}; client_body_temp_path ${prefix}; proxy_temp_path ${prefix}; fastcgi_temp_path ${prefix}; uwsgi_temp_path ${prefix}; scgi_temp_path ${prefix};
  server { listen 127.0.0.1:${port} ssl; ssl_certificate ${fx.cert}; ssl_certificate_key ${fx.key}; root ${prefix}/html;
    location / { return 200 "reply $uri\\n"; } } }\n`,
  );
  const nginx = spawn('nginx', ['-p', prefix, '-c', path.join(prefix, 'nginx.conf')], { stdio: 'ignore' });
  // listened for at once: an nginx that could not start has closed before the finally below
  const closed = new Promise((r) => nginx.once('close', r));
  try {
    let workers: number[] = [];
    for (let i = 0; i < 100 && workers.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const ps = spawnSync('pgrep', ['-P', String(nginx.pid)], { encoding: 'utf8' }).stdout.trim();
      workers = ps ? ps.split('\n').map(Number) : [];
    }
    assert.equal(workers.length, 1, `one nginx worker (${fs.existsSync(path.join(prefix, 'error.log')) ? fs.readFileSync(path.join(prefix, 'error.log'), 'utf8').trim().split('\n').pop() : 'no error log'})`);
    const rec = recorder();
    let attached = () => {};
    const ready = new Promise<void>((res) => (attached = res));
    const trace = attachTraced({
      ...engineBase,
      log: (line) => /attached to pid/.test(line) && attached(),
      pids: [nginx.pid!, ...workers],
      followChildren: true,
      durationMs: 4000,
      onRecord: rec.onRecord,
    });
    await ready;
    const clients = [['1', '2', '3'], ['4']].map((sizes) => spawnSync(PYTHON, [CLIENT, String(port), ...sizes], { encoding: 'utf8' }));
    await trace;
    const data = tlsData(rec.records, workers[0]);
    const requests = data.filter((r) => r.direction === 'rx').map((r) => Buffer.from(r.bytes).toString('latin1')).join('').match(/^GET \S+/gm) ?? [];
    const logged = fs.readFileSync(accessLog, 'utf8').trim().split('\n').map((l) => /"(GET \S+)/.exec(l)?.[1]);
    assert.deepEqual(requests, logged, 'requests in the plaintext = the access log');
    assert.deepEqual(requests, ['GET /1', 'GET /2', 'GET /3', 'GET /4']);
    for (const c of clients) {
      assert.equal(c.status, 0, c.stderr);
      const client = JSON.parse(c.stdout) as { localPort: number; sent: string; received: string };
      const cookie = cookieOf(rec.records, workers[0], port, client.localPort);
      const mine = data.filter((r) => r.key.cookie === cookie);
      assert.deepEqual(stream(mine, 'rx'), Buffer.from(client.sent, 'hex'));
      assert.deepEqual(stream(mine, 'tx'), Buffer.from(client.received, 'hex'));
    }
  } finally {
    nginx.kill('SIGQUIT');
    await closed;
  }
});
