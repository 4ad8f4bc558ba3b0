// SPDX-License-Identifier: MIT
// conntrackDump over ctnetlink and the NAT mapping: a TCP connection from one namespace to a server in
// another, routed through the host and masqueraded there (an nft table of this test, ports remapped),
// must appear in the dump with the address and port the server saw. Names carry "ptlive"; the host is
// as before afterwards. Needs root. Traffic stays between the two namespaces the test creates.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mapConnections } from '../../src/isolate/natmap';
import { loadNative } from '../../src/native';
import { createVethNamespace, deleteNamespace, freeSubnet, hostState, NsProgram, sh, SUFFIX, type VethNamespace } from './netns-fixture';

const native = loadNative();
const TABLE = `ptlive_${SUFFIX}`;
const SERVER_PORT = 7777;
const CLIENT_PORT = 51234; // outside the masquerade port range below, so the mapping must change it
const IPS_SRC_NAT = 0x10;

const SERVER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', ${SERVER_PORT})); s.listen(1)
print('ready')
c, peer = s.accept()
print('peer %s %d' % peer)
while c.recv(65536): pass
`;
// Connects from a fixed port, says from where, and holds the connection until its stdin closes.
const CLIENT = `
import socket, sys
c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
c.bind(('0.0.0.0', ${CLIENT_PORT})); c.connect((sys.argv[1], ${SERVER_PORT}))
print('local %s %d' % c.getsockname())
sys.stdin.read()
c.close()
`;

let before_: ReturnType<typeof hostState>;
let client: VethNamespace;
let server: VethNamespace;

before(() => {
  before_ = hostState();
  const prefix = freeSubnet();
  client = createVethNamespace('a', prefix, 0);
  server = createVethNamespace('b', prefix, 1);
  sh('ip', '-n', client.name, 'route', 'add', 'default', 'via', client.hostAddress);
  // Forwarding for these two devices only (they go with the namespaces); net.ipv4.ip_forward is untouched.
  sh('sysctl', '-q', '-w', `net.ipv4.conf.${client.hostIf}.forwarding=1`, `net.ipv4.conf.${server.hostIf}.forwarding=1`);
  const nft = spawnSync('nft', ['-f', '-'], {
    input: `table ip ${TABLE} {\n chain postrouting {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname "${server.hostIf}" meta l4proto tcp masquerade to :40000-40999\n  oifname "${server.hostIf}" masquerade\n }\n}\n`,
    encoding: 'utf8',
  });
  assert.equal(nft.status, 0, nft.stderr);
});

after(() => {
  spawnSync('nft', ['delete', 'table', 'ip', TABLE]);
  deleteNamespace(client);
  deleteNamespace(server);
  assert.deepEqual(hostState(), before_, 'ip link, ip netns, nft ruleset and ip_forward are as before');
});

test('a masqueraded connection is in the dump and natmap gives the source the server saw', async () => {
  const srv = new NsProgram(server, SERVER);
  let cli: NsProgram | undefined;
  try {
    assert.equal(await srv.nextLine(), 'ready');
    cli = new NsProgram(client, CLIENT, [server.nsAddress]);
    const local = (await cli.nextLine()).split(' ');
    const peer = (await srv.nextLine()).split(' ');
    assert.deepEqual(local, ['local', client.nsAddress, String(CLIENT_PORT)]);
    assert.equal(peer[1], server.hostAddress, 'the server saw the host address: masqueraded');
    const seenPort = Number(peer[2]);
    assert.ok(seenPort >= 40000 && seenPort <= 40999, `port ${seenPort} remapped into the masquerade range`);

    const dump = native.conntrackDump({ family: 'ipv4' });
    const entry = dump.find((e) => e.original.src === client.nsAddress && e.original.srcPort === CLIENT_PORT && e.original.dst === server.nsAddress);
    assert.ok(entry, `the connection is in the conntrack dump (${dump.length} entries)`);
    assert.equal(entry.family, 'ipv4');
    assert.equal(entry.original.protocol, 6);
    assert.equal(entry.original.dstPort, SERVER_PORT);
    assert.deepEqual([entry.reply.src, entry.reply.srcPort, entry.reply.dst, entry.reply.dstPort], [server.nsAddress, SERVER_PORT, server.hostAddress, seenPort]);
    assert.ok((entry.status ?? 0) & IPS_SRC_NAT, 'IPS_SRC_NAT set');
    assert.equal(entry.tcpState, 3, 'TCP_CONNTRACK_ESTABLISHED');
    assert.equal(typeof entry.id, 'number');

    const [mapping] = mapConnections(dump, [{ protocol: 'tcp', src: client.nsAddress, srcPort: CLIENT_PORT, dst: server.nsAddress, dstPort: SERVER_PORT }]);
    assert.deepEqual(
      { src: mapping?.translatedSrc, port: mapping?.translatedSrcPort, snat: mapping?.sourceTranslated, dnat: mapping?.destinationTranslated },
      { src: server.hostAddress, port: seenPort, snat: true, dnat: false },
    );

    // The family filter runs in the kernel; a namespace without NAT rules tracks nothing of it.
    assert.equal(native.conntrackDump({ family: 'ipv6' }).some((e) => e.family !== 'ipv6'), false);
    assert.equal(native.conntrackDump({ netnsPath: client.path }).some((e) => e.reply.dst === server.hostAddress), false);

    cli.child.stdin.end();
    assert.equal(await cli.exit(), 0);
    assert.equal(await srv.exit(), 0);
  } finally {
    cli?.kill();
    srv.kill();
  }
});

test('conntrackDump: bad options are a TypeError, a missing namespace an ENOENT error', () => {
  assert.throws(() => native.conntrackDump({ family: 'ipx' as 'ipv4' }), TypeError);
  assert.throws(() => native.conntrackDump({ netnsPath: '/run/netns/ptlive-none' }), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && !e.message.includes('\n'));
});
