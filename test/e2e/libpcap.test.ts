// SPDX-License-Identifier: MIT
// libpcap capture inside a network namespace the test creates (netns + veth pair, names with "ptlive"):
// known UDP datagrams and TCP bytes from the host to a program in the namespace, captured on "any"
// (LINUX_SLL2) and on the namespace's veth end through netnsPath, written as pcapng and counted by
// tshark. Needs root. Traffic goes only to addresses inside that namespace.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadNative, type NativeError } from '../../src/native';
import { libpcapOptions, startLibpcapRun } from '../../src/pcap/libpcap';
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2 } from '../../src/pcap/pcapng';
import { fileSink } from '../../src/pcap/writer';
import { createVethNamespace, deleteNamespace, freeSubnet, hostState, NsProgram, threadNames, threadStillListed, type VethNamespace } from './netns-fixture';

const native = loadNative();
const UDP_PORT = 7002;
const CLOSED_PORT = 7003;
const TCP_PORT = 7001;
const DATAGRAMS = 40;
const DATAGRAM_BYTES = 100;
const TCP_BYTES = 300_000;

// Counts UDP datagrams until an empty one, and TCP bytes until EOF; prints both.
const SINK = `
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', ${UDP_PORT}))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('0.0.0.0', ${TCP_PORT})); t.listen(1)
print('ready')
n = 0
while True:
    d = u.recv(65536)
    if not d: break
    n += 1
print('udp', n)
c, _ = t.accept()
b = 0
while True:
    d = c.recv(65536)
    if not d: break
    b += len(d)
c.close()
print('tcp', b)
`;

const ROOT_BANNER = /^Running as user "[^"]*" and group "[^"]*"\. This could be dangerous\.\n?/m;
function tshark(file: string, ...args: string[]): string {
  const r = spawnSync('tshark', ['-r', file, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr.replace(ROOT_BANNER, ''));
  return r.stdout;
}
const count = (file: string, filter: string): number => tshark(file, '-Y', filter, '-T', 'fields', '-e', 'frame.number').split('\n').filter(Boolean).length;

let before_: ReturnType<typeof hostState>;
let ns: VethNamespace;
let dir: string;

before(() => {
  before_ = hostState();
  ns = createVethNamespace('c', freeSubnet(), 0);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-ptlive-'));
});

after(() => {
  deleteNamespace(ns);
  fs.rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(hostState(), before_, 'ip link, ip netns, nft ruleset and ip_forward are as before');
});

test('listInterfaces(netnsPath) lists the namespace devices with their index and link type, not the host devices', async () => {
  const list = native.listInterfaces(ns.path);
  const veth = list.find((i) => i.name === ns.nsIf);
  assert.ok(veth, `${ns.nsIf} listed: ${list.map((i) => i.name).join(' ')}`);
  const index = Number(/^(\d+):/.exec(spawnSync('ip', ['-n', ns.name, '-o', 'link', 'show', ns.nsIf], { encoding: 'utf8' }).stdout)?.[1]);
  assert.equal(veth.index, index);
  assert.equal(veth.linkType, LINKTYPE_ETHERNET);
  assert.equal(veth.up, true);
  assert.equal(list.find((i) => i.name === 'lo')?.loopback, true);
  assert.ok(list.some((i) => i.name === 'any'));
  assert.equal(list.some((i) => i.name === ns.hostIf), false, 'the host end is not in the namespace');
  assert.ok(native.listInterfaces().some((i) => i.name === ns.hostIf), 'without netnsPath: the host devices');
  assert.equal(await threadStillListed('proctap-netns'), false, 'the namespace thread was joined');
});

test('capture on "any" and on the veth end inside the netns: every packet, counted by tshark, stats agree', async () => {
  const file = path.join(dir, 'live.pcapng');
  const sink = new NsProgram(ns, SINK);
  try {
    assert.equal(await sink.nextLine(), 'ready');
    const errors: Error[] = [];
    const run = startLibpcapRun(
      [
        // The namespace as `attach` finds it: through a process living in it.
        { device: 'any', netnsPath: `/proc/${sink.child.pid}/ns/net`, snaplen: 262144, linkType: LINKTYPE_LINUX_SLL2, description: `netns ${ns.name}` },
        { device: ns.nsIf, netnsPath: ns.path, snaplen: 128, filter: `udp port ${UDP_PORT}` },
      ],
      { sink: fileSink(file), userAppl: 'proctap e2e', onError: (e) => errors.push(e) },
    );
    assert.deepEqual(run.interfaces, [{ device: 'any', linkType: 276 }, { device: ns.nsIf, linkType: 1 }]);
    assert.equal(threadNames().filter((n) => n === 'proctap-pcap').length, 2, 'one capture thread per source');
    assert.equal(fs.readdirSync('/sys/class/net').includes(ns.nsIf), false, "the thread's sysfs mount did not reach the host");

    const udp = dgram.createSocket('udp4');
    for (let i = 0; i < DATAGRAMS; i++) {
      await new Promise<void>((resolve, reject) => udp.send(Buffer.alloc(DATAGRAM_BYTES, i), UDP_PORT, ns.nsAddress, (e) => (e ? reject(e) : resolve())));
    }
    await new Promise<void>((resolve, reject) => udp.send(Buffer.alloc(1), CLOSED_PORT, ns.nsAddress, (e) => (e ? reject(e) : resolve())));
    await new Promise<void>((resolve, reject) => udp.send(Buffer.alloc(0), UDP_PORT, ns.nsAddress, (e) => (e ? reject(e) : resolve())));
    udp.close();
    assert.equal(await sink.nextLine(), `udp ${DATAGRAMS}`);
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(TCP_PORT, ns.nsAddress, () => c.end(Buffer.alloc(TCP_BYTES, 0x61)));
      c.on('error', reject).on('close', () => resolve()).resume();
    });
    assert.equal(await sink.nextLine(), `tcp ${TCP_BYTES}`);
    assert.equal(await sink.exit(), 0);

    const [any, veth] = await run.stop();
    assert.deepEqual(errors, []);
    assert.equal(await threadStillListed('proctap-pcap'), false, 'capture threads joined');

    // Every packet the kernel counted reached the file, none dropped.
    assert.equal(any.error, undefined);
    assert.equal(any.dropped, 0);
    assert.equal(any.received, any.delivered + any.dropped, 'ps_recv counts delivered and dropped packets');
    assert.equal(any.written, any.delivered);
    assert.equal(veth.received, veth.written);
    assert.equal(veth.dropped, 0);
    assert.equal(count(file, 'frame.interface_id == 0'), any.written);
    assert.equal(count(file, 'frame.interface_id == 1'), veth.written);

    // "any" (SLL2): the datagrams, inbound; the TCP payload exactly; ARP and ICMP with no socket behind them.
    const onAny = 'frame.interface_id == 0 && ';
    assert.equal(count(file, `${onAny}udp.dstport == ${UDP_PORT} && udp.length == ${8 + DATAGRAM_BYTES} && frame.packet_flags_direction == 1`), DATAGRAMS);
    assert.equal(count(file, `${onAny}udp.dstport == ${UDP_PORT}`), DATAGRAMS + 1);
    const tcpPayload = tshark(file, '-Y', `${onAny}tcp.dstport == ${TCP_PORT}`, '-T', 'fields', '-e', 'tcp.len')
      .split('\n').filter(Boolean).reduce((s, n) => s + Number(n), 0);
    assert.equal(tcpPayload, TCP_BYTES);
    assert.ok(count(file, `${onAny}arp`) >= 2, 'ARP request and reply');
    assert.ok(count(file, `${onAny}icmp.type == 3 && frame.packet_flags_direction == 2`) >= 1, 'ICMP port unreachable, outbound');
    assert.equal(count(file, `${onAny}sll.ifindex == ${native.listInterfaces(ns.path).find((i) => i.name === ns.nsIf)!.index} && udp.dstport == ${UDP_PORT}`), DATAGRAMS + 1);

    // The veth end (EN10MB) with its filter: only the datagrams, truncated to the snap length.
    assert.equal(veth.written, DATAGRAMS + 1);
    assert.equal(count(file, `frame.interface_id == 1 && eth && udp.dstport == ${UDP_PORT}`), DATAGRAMS + 1);
    assert.equal(count(file, 'frame.interface_id == 1 && frame.cap_len > 128'), 0);

    // capinfos sees both interfaces and their statistics blocks.
    const info = spawnSync('capinfos', ['-I', file], { encoding: 'utf8' }).stdout;
    assert.match(info, /Linux cooked-mode capture v2/);
    assert.match(info, new RegExp(`Number of stat entries = 1`));
  } finally {
    sink.kill();
  }
});

test('a bad device, namespace or filter is a one-line error with a code, and leaves no thread behind', async () => {
  const attempt = (options: { device: string; netnsPath?: string; filter?: string }): NativeError => {
    try {
      new native.LibpcapCapture(libpcapOptions({ snaplen: 100, ...options }), () => {}).close();
    } catch (err) {
      return err as NativeError;
    }
    assert.fail(`opened ${JSON.stringify(options)}`);
  };
  const noDevice = attempt({ device: ns.hostIf, netnsPath: ns.path });
  assert.equal(noDevice.code, 'ENODEV');
  assert.match(noDevice.message, /^pcap_activate ptlive\w+: No such device exists$/);
  const noNetns = attempt({ device: 'any', netnsPath: '/run/netns/ptlive-none' });
  assert.equal(noNetns.code, 'ENOENT');
  assert.equal(noNetns.errno, 2);
  const badFilter = attempt({ device: 'any', netnsPath: ns.path, filter: 'udp port (' });
  assert.equal(badFilter.code, 'EINVAL');
  assert.match(badFilter.message, /^invalid filter 'udp port \(': /);
  for (const e of [noDevice, noNetns, badFilter]) assert.equal(e.message.includes('\n'), false);
  assert.equal(await threadStillListed('proctap-pcap'), false);
});

test('a capture whose device disappears ends with an error in its stats', async () => {
  const victim = createVethNamespace('v', freeSubnet(), 0);
  let deleted = false;
  try {
    const capture = new native.LibpcapCapture(libpcapOptions({ device: victim.hostIf, snaplen: 100, timeoutMs: 20 }), () => {});
    assert.equal(capture.stats(), null, 'no statistics while running');
    spawnSync('ip', ['link', 'del', victim.hostIf]);
    deleted = true;
    const stats = await capture.stop();
    assert.match(stats.error ?? '', /disappeared|ended: /);
    assert.equal(await threadStillListed('proctap-pcap'), false);
  } finally {
    if (!deleted) spawnSync('ip', ['link', 'del', victim.hostIf]);
    deleteNamespace(victim);
  }
});
