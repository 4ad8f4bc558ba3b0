// SPDX-License-Identifier: MIT
// The pure parts of src/tls: /proc/PID/maps, ELF symbols (against readelf on this machine's libraries),
// the ld.so cache (against ldconfig -p), hook plans, notes, key log lines, and the Decryption Secrets
// Block (against the one editcap writes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as L from '../../src/native/layout.generated';
import { executableMappings, splitDev } from '../../src/tls/maps';
import { inspectElf } from '../../src/tls/elf';
import { parseLdCache, tlsLibrariesInCache } from '../../src/tls/ldcache';
import { WANTED_SYMBOLS, planHooks, unhookableExecutable, unhookableLibrary } from '../../src/tls/libraries';
import { tlsNotes, type TlsNoteFacts } from '../../src/tls/notes';
import { KeyLogLines, keyLogEnvironment } from '../../src/tls/keylog-lines';
import { commandExecutable } from '../../src/tls/hooks';
import { keyLogOwner } from '../../src/tls/keylog';
import { PacketCapture } from '../../src/pcap/capture';
import type { PacketRecord } from '../../src/kernel/records';
import { BLOCK_TYPE_DECRYPTION_SECRETS, SECRETS_TYPE_TLS_KEYLOG, decryptionSecretsBlock, enhancedPacketBlock, interfaceDescriptionBlock, sectionHeaderBlock, LINKTYPE_RAW } from '../../src/pcap/pcapng';

test('maps: executable file mappings, each file once, deleted ones marked, anonymous and data mappings skipped', () => {
  const maps = [
    '55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 1835015                    /usr/bin/curl',
    '55d0c0a02000-55d0c0a19000 r-xp 00002000 fd:01 1835015                    /usr/bin/curl',
    '7f1a2b000000-7f1a2b021000 rw-p 00000000 00:00 0 ',
    '7f1a2c000000-7f1a2c05a000 r-xp 0001b000 fd:01 2621890                    /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)',
    '7f1a2c200000-7f1a2c210000 r--p 00000000 fd:01 2621999                    /usr/lib/locale/C.utf8/LC_CTYPE',
    '7ffd5e9f0000-7ffd5e9f2000 r-xp 00000000 00:00 0                          [vdso]',
    '7f1a2d000000-7f1a2d001000 r-xp 00000000 103:02 77                        /opt/app/lib with space.so',
  ].join('\n');
  const files = executableMappings(maps);
  assert.deepEqual(files.map((f) => [f.id, f.path, f.deleted, f.range]), [
    ['253:1:1835015', '/usr/bin/curl', false, '55d0c0a02000-55d0c0a19000'],
    ['253:1:2621890', '/usr/lib/x86_64-linux-gnu/libssl.so.3', true, '7f1a2c000000-7f1a2c05a000'],
    ['259:2:77', '/opt/app/lib with space.so', false, '7f1a2d000000-7f1a2d001000'],
  ]);
});

test('maps: st_dev splits into the major and minor that /proc/PID/maps shows', () => {
  const own = executableMappings(fs.readFileSync('/proc/self/maps', 'utf8')).find((f) => f.path === fs.readlinkSync('/proc/self/exe'));
  assert.ok(own, 'node itself is mapped');
  const st = fs.statSync(own.path);
  assert.equal(st.ino, own.inode);
  // an overlay file system shows another device in maps than stat: only compare where they agree on the inode's fs
  const { major, minor } = splitDev(st.dev);
  if (spawnSync('stat', ['-f', '-c', '%T', own.path], { encoding: 'utf8' }).stdout.trim() !== 'overlayfs') assert.deepEqual([major, minor], [own.major, own.minor]);
  assert.deepEqual(splitDev(0x10300 + 0x2), { major: 259, minor: 2 });
  assert.deepEqual(splitDev((1n << 32n) * 0x1000n + 0x12345n), { major: 0x1000 + 0x123, minor: 0x45 });
});

function readelfFunctions(file: string): Map<string, number> {
  const out = spawnSync('readelf', ['-W', '--dyn-syms', file], { encoding: 'utf8', maxBuffer: 256 << 20 }).stdout;
  const sections = spawnSync('readelf', ['-W', '-S', file], { encoding: 'utf8' }).stdout;
  const text = /\.text\s+PROGBITS\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(sections);
  assert.ok(text);
  const delta = parseInt(text[1], 16) - parseInt(text[2], 16);
  const found = new Map<string, number>();
  for (const line of out.split('\n')) {
    const m = /^\s*\d+: ([0-9a-f]+)\s+\d+ (FUNC|IFUNC)\s+(GLOBAL|WEAK)\s+\S+\s+(\d+)\s+(\S+?)(@.*)?$/.exec(line);
    if (m && WANTED_SYMBOLS.has(m[5]) && !found.has(m[5])) found.set(m[5], parseInt(m[1], 16) - delta);
  }
  return found;
}

test('elf: defined TLS functions and their file offsets in libssl, libgnutls and this node, as readelf says', () => {
  const files = ['/usr/lib/x86_64-linux-gnu/libssl.so.3', '/usr/lib/x86_64-linux-gnu/libgnutls.so.30', fs.readlinkSync('/proc/self/exe')];
  for (const file of files) {
    if (!fs.existsSync(file)) continue;
    const facts = inspectElf(file, WANTED_SYMBOLS, { symtab: false });
    assert.ok(facts, file);
    assert.deepEqual(new Map([...facts.defined].sort()), new Map([...readelfFunctions(file)].sort()), file);
  }
  const sh = inspectElf('/bin/sh', WANTED_SYMBOLS, { symtab: true });
  assert.ok(sh);
  assert.equal(sh.defined.size, 0, '/bin/sh has no TLS functions');
  assert.ok(sh.sectionNames.has('.rodata'));
  const tmp = path.join(os.tmpdir(), `proctap-notelf-${process.pid}`);
  fs.writeFileSync(tmp, 'not an ELF file');
  assert.equal(inspectElf(tmp, WANTED_SYMBOLS, { symtab: true }), null);
  fs.rmSync(tmp);
});

test('ld.so cache: the same libraries as ldconfig -p, and the TLS ones among them', () => {
  const cache = parseLdCache(fs.readFileSync('/etc/ld.so.cache'));
  const ldconfig = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' }).stdout.split('\n').slice(1);
  const expected = ldconfig.map((l) => /^\s*(\S+) \(.*\) => (\S+)$/.exec(l)).filter((m) => m !== null).map((m) => `${m[1]} ${m[2]}`);
  assert.deepEqual(cache.map((c) => `${c.name} ${c.path}`).sort(), expected.sort());
  assert.deepEqual(tlsLibrariesInCache([
    { name: 'libssl.so.3', path: '/lib/x86_64-linux-gnu/libssl.so.3' },
    { name: 'libssl.so.3', path: '/lib/x86_64-linux-gnu/libssl.so.3' },
    { name: 'libssl.so', path: '/lib/x86_64-linux-gnu/libssl.so' },
    { name: 'libgnutls.so.30', path: '/lib/x86_64-linux-gnu/libgnutls.so.30' },
    { name: 'libssl3.so', path: '/lib/x86_64-linux-gnu/libssl3.so' },
  ]), ['/lib/x86_64-linux-gnu/libssl.so.3', '/lib/x86_64-linux-gnu/libgnutls.so.30']);
  assert.deepEqual(parseLdCache(Buffer.from('garbage')), []);
});

test('plans: OpenSSL with the functions it has, Node.js deferred, GnuTLS; NSS and static or Go TLS are notes', () => {
  const offsets = (names: string[]) => new Map(names.map((n, i) => [n, 0x1000 + i]));
  const openssl = planHooks({ name: 'libssl.so.3', defined: offsets(['SSL_write', 'SSL_read', 'SSL_free']) });
  assert.deepEqual(openssl, {
    library: 'OpenSSL',
    probes: [
      { symbol: 'SSL_write', fn: 0, offset: 0x1000 },
      { symbol: 'SSL_read', fn: L.TLS_FN_READ, offset: 0x1001 },
      { symbol: 'SSL_free', fn: 0, free: true, offset: 0x1002 },
    ],
  });
  const node = planHooks({ name: 'node', defined: offsets(['SSL_write', 'SSL_read', 'SSL_read_ex', 'napi_module_register']) });
  assert.equal(node?.library, 'OpenSSL (built into Node.js)');
  assert.deepEqual(node?.probes.map((p) => p.fn), [L.TLS_FN_DEFERRED, L.TLS_FN_READ | L.TLS_FN_DEFERRED, L.TLS_FN_READ | L.TLS_FN_EX | L.TLS_FN_DEFERRED]);
  const gnutls = planHooks({ name: 'libgnutls.so.30', defined: offsets(['gnutls_record_send', 'gnutls_record_recv', 'gnutls_handshake']) });
  assert.deepEqual(gnutls?.probes.map((p) => [p.symbol, p.fn]), [
    ['gnutls_record_send', L.TLS_FN_SSIZE],
    ['gnutls_record_recv', L.TLS_FN_READ | L.TLS_FN_SSIZE],
    ['gnutls_handshake', L.TLS_FN_HANDSHAKE],
  ]);
  assert.equal(planHooks({ name: 'libssl.so.3', defined: offsets(['SSL_write']) }), null, 'both directions are needed');
  assert.equal(planHooks({ name: 'libc.so.6', defined: new Map() }), null);
  assert.equal(unhookableLibrary('libnss3.so')?.library, 'NSS');
  assert.equal(unhookableLibrary('libssl3.so')?.library, 'NSS');
  assert.equal(unhookableLibrary('libc.so.6'), null);
  assert.equal(unhookableExecutable(new Set(['ssl/ssl_lib.c']))?.library, 'OpenSSL (static)');
  assert.equal(unhookableExecutable(new Set(['ssl/ssl_lib.c', 'BoringSSL']))?.library, 'BoringSSL (static)');
  assert.equal(unhookableExecutable(new Set(['crypto/tls.(*Conn).Write']))?.library, 'Go crypto/tls');
  assert.equal(unhookableExecutable(new Set()), null);
});

const facts = (over: Partial<TlsNoteFacts>): TlsNoteFacts => ({ mode: 'run', unavailable: null, unhooked: [], tlsProcesses: 0, dataRecords: 0, unboundRecords: 0, capture: null, ...over });

test('notes: unhooked libraries grouped per library, unbound plaintext, and when a capture stays encrypted', () => {
  assert.deepEqual(tlsNotes(facts({})), []);
  const unhooked = [
    { pid: 12, comm: 'firefox', library: 'NSS', reason: 'NSS is not hooked' },
    { pid: 11, comm: 'firefox', library: 'NSS', reason: 'NSS is not hooked' },
    { pid: 11, comm: 'firefox', library: 'NSS', reason: 'NSS is not hooked' },
    { pid: 30, comm: 'app', library: 'Go crypto/tls', reason: "Go's crypto/tls is not hooked" },
  ];
  assert.deepEqual(tlsNotes(facts({ unhooked, tlsProcesses: 3 })), [
    'TLS plaintext not captured for pid 11 (firefox), pid 12 (firefox): they use NSS (NSS is not hooked).',
    "TLS plaintext not captured for pid 30 (app): it uses Go crypto/tls (Go's crypto/tls is not hooked).",
  ]);
  const many = Array.from({ length: 7 }, (_, i) => ({ pid: 100 + i, comm: 'w', library: 'wolfSSL', reason: 'wolfSSL is not hooked' }));
  assert.match(tlsNotes(facts({ unhooked: many }))[0], /pid 104 \(w\) and 2 more: they use wolfSSL/);
  assert.deepEqual(tlsNotes(facts({ dataRecords: 10, unboundRecords: 4 })), [
    '4 of 10 TLS plaintext records are not tied to a connection: the library did its socket I/O outside its read/write calls (memory BIOs, as Python\'s asyncio does).',
  ]);
  assert.match(tlsNotes(facts({ mode: 'attach', tlsProcesses: 1, capture: { format: 'pcapng', keyLog: false } }))[0], /^The capture stays encrypted: attach cannot hand a TLS key log/);
  assert.match(tlsNotes(facts({ tlsProcesses: 1, capture: { format: 'pcap', keyLog: false } }))[0], /classic pcap/);
  assert.match(tlsNotes(facts({ tlsProcesses: 1, capture: { format: 'pcapng', keyLog: false } }))[0], /--no-tls-keylog/);
  assert.deepEqual(tlsNotes(facts({ tlsProcesses: 1, capture: { format: 'pcapng', keyLog: true } })), []);
  assert.deepEqual(tlsNotes(facts({ mode: 'attach', tlsProcesses: 0, capture: { format: 'pcapng', keyLog: false } })), [], 'no TLS, nothing to say');
  const down = tlsNotes(facts({ unavailable: 'ENOENT: no uprobe PMU', unhooked: [{ pid: 1, comm: 'c', library: 'OpenSSL', reason: 'could not be hooked: ENOENT: no uprobe PMU' }] }));
  assert.deepEqual(down, ['TLS plaintext not captured: uprobes cannot be attached here (ENOENT: no uprobe PMU).']);
});

const CR = 'a'.repeat(64);
const SECRET = 'b'.repeat(96);

test('key log lines: any chunking, several writers\' whole lines, comments, garbage and overlong lines dropped', () => {
  const text = `# TLS secrets log file\nCLIENT_RANDOM ${CR} ${SECRET}\nCLIENT_TRAFFIC_SECRET_0 ${CR} ${'c'.repeat(64)}\r\nnot a key line\n\nSERVER_HANDSHAKE_TRAFFIC_SECRET ${CR} ${'d'.repeat(64)}\n`;
  const expected = `CLIENT_RANDOM ${CR} ${SECRET}\nCLIENT_TRAFFIC_SECRET_0 ${CR} ${'c'.repeat(64)}\nSERVER_HANDSHAKE_TRAFFIC_SECRET ${CR} ${'d'.repeat(64)}\n`;
  for (const size of [1, 3, 7, 64, text.length]) {
    const lines = new KeyLogLines();
    let out = '';
    for (let at = 0; at < text.length; at += size) out += lines.push(Buffer.from(text.slice(at, at + size), 'latin1'));
    assert.equal(out, expected, `chunks of ${size}`);
    assert.equal(lines.accepted, 3);
    assert.equal(lines.rejected, 1);
  }
  const lines = new KeyLogLines();
  assert.equal(lines.push(Buffer.from('x'.repeat(2000))), '');
  assert.equal(lines.push(Buffer.from(`\nCLIENT_RANDOM ${CR} ${SECRET}\n`)), `CLIENT_RANDOM ${CR} ${SECRET}\n`, 'an overlong line does not swallow the next');
  assert.equal(lines.push(Buffer.from(`CLIENT_RANDOM ${CR} ${SECRET}`)), '', 'no line before its newline');
});

test('key log environment: SSLKEYLOGFILE, and --tls-keylog after the NODE_OPTIONS the user gave', () => {
  assert.deepEqual(keyLogEnvironment({ PATH: '/bin' }, '/run/proctap/keylog-1-ab/sslkeylog'), {
    PATH: '/bin',
    SSLKEYLOGFILE: '/run/proctap/keylog-1-ab/sslkeylog',
    NODE_OPTIONS: '--tls-keylog=/run/proctap/keylog-1-ab/sslkeylog',
  });
  assert.equal(keyLogEnvironment({ NODE_OPTIONS: '--max-old-space-size=100' }, '/k').NODE_OPTIONS, '--max-old-space-size=100 --tls-keylog=/k');
  assert.equal(keyLogOwner('keylog-4242-0011aabbccddeeff'), 4242);
  assert.equal(keyLogOwner('keylog-x-00'), null);
  assert.equal(keyLogOwner('forward.json'), null);
});

test('command executable: found on PATH as execvp would, or taken as given with a slash', () => {
  assert.equal(commandExecutable('sh', '/nonexistent:/bin:/usr/bin'), '/bin/sh');
  assert.equal(commandExecutable('/bin/sh', ''), '/bin/sh');
  assert.equal(commandExecutable('no-such-command-here', '/bin:/usr/bin'), null);
});

test('DSB: the same block editcap --inject-secrets writes', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-dsb-'));
  try {
    const keys = `CLIENT_RANDOM ${CR} ${SECRET}\nCLIENT_RANDOM ${'e'.repeat(64)} ${SECRET}\n`;
    const ours = decryptionSecretsBlock(SECRETS_TYPE_TLS_KEYLOG, Buffer.from(keys));
    assert.equal(ours.readUInt32LE(0), BLOCK_TYPE_DECRYPTION_SECRETS);
    assert.equal(ours.readUInt32LE(8), 0x544c534b);
    assert.equal(ours.readUInt32LE(12), keys.length);
    assert.equal(ours.length % 4, 0);
    const packet = Buffer.from('450000140000000040ff0000000000000000000000', 'hex').subarray(0, 20);
    const input = path.join(dir, 'in.pcapng');
    fs.writeFileSync(input, Buffer.concat([
      sectionHeaderBlock({}),
      interfaceDescriptionBlock({ linkType: LINKTYPE_RAW, snapLen: 0 }),
      enhancedPacketBlock({ interfaceId: 0, timestampNs: 1n, capturedData: packet, originalLength: packet.length }),
    ]));
    fs.writeFileSync(path.join(dir, 'keys.txt'), keys);
    const r = spawnSync('editcap', ['--inject-secrets', `tls,${path.join(dir, 'keys.txt')}`, input, path.join(dir, 'out.pcapng')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const theirs = fs.readFileSync(path.join(dir, 'out.pcapng'));
    const start = (() => {
      for (let i = 0; i + 8 <= theirs.length; ) {
        const type = theirs.readUInt32LE(i);
        if (type === BLOCK_TYPE_DECRYPTION_SECRETS) return i;
        i += theirs.readUInt32LE(i + 4);
      }
      return -1;
    })();
    assert.ok(start >= 0, 'editcap wrote a DSB');
    const block = theirs.subarray(start, start + theirs.readUInt32LE(start + 4));
    assert.deepEqual(block, ours);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('capture with a key log: packets wait for the secrets a client logs after reading them', () => {
  const log: string[] = [];
  const writer = {
    writePacket: (p: { data: Uint8Array }) => void log.push(`packet ${p.data[0]}`),
    flush: () => {},
    close: () => void log.push("close"),
    writeDecryptionSecrets: (_type: number, data: Uint8Array) => log.push(`dsb ${Buffer.from(data).toString()}`),
    writeInterfaceStatistics: () => log.push('isb'),
    writeNameResolution: () => {},
  };
  let logged: string | null = null;
  const secrets = {
    take: () => {
      const lines = logged;
      logged = null;
      return lines === null ? null : Buffer.from(lines);
    },
  };
  const capture = new PacketCapture(writer, () => undefined, secrets);
  const packet = (n: number): PacketRecord => ({ type: 'packet', tgid: 1, tsNs: n, startTime: 0n, cookie: 1n, originalLength: 1, ifindex: 1, direction: 'rx', data: Uint8Array.of(n) });
  capture.onPacket(packet(1)); // the server's first flight, before the client logged its secrets
  capture.flush();
  logged = 'K1\n';
  capture.onPacket(packet(2));
  capture.flush();
  assert.deepEqual(log, ['dsb K1\n'], 'packets are held, the secrets go out first');
  capture.close(0);
  assert.deepEqual(log, ['dsb K1\n', 'packet 1', 'packet 2', 'isb', 'close']);
  assert.equal(capture.stats.written, 2);
});
