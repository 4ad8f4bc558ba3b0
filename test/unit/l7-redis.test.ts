// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisCommandName } from '../../src/l7/redis';
import { briefs, bytes, conversation, everySplit, merged, pieces, run, type Call } from './l7wire';

/** A command as clients send it: an array of bulk strings. */
const cmd = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
const bulk = (s: string) => `$${s.length}\r\n${s}\r\n`;

test('Redis: commands named as INFO commandstats names them, replies, errors, sizes', () => {
  const parts: Array<['tx' | 'rx', string]> = [
    ['tx', cmd('SET', 'k', 'v')], ['rx', '+OK\r\n'],
    ['tx', cmd('GET', 'k')], ['rx', bulk('v')],
    ['tx', cmd('CONFIG', 'GET', 'maxmemory')], ['rx', '*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n'],
    ['tx', cmd('INCR', 'k')], ['rx', '-ERR value is not an integer or out of range\r\n'],
    ['tx', cmd('client', 'list')], ['rx', '=11\r\ntxt:id=1 xy\r\n'],
    ['tx', cmd('GET', 'missing')], ['rx', '$-1\r\n'],
  ];
  const { exchanges, decoder } = run(conversation(parts));
  assert.equal(decoder.status.protocol, 'redis');
  assert.deepEqual(exchanges.map((x) => `${x.operation} ${x.status}`), ['set OK', 'get OK', 'config|get OK', 'incr ERR', 'client|list OK', 'get OK']);
  assert.deepEqual(exchanges.map((x) => [x.requestBytes, x.responseBytes]), [0, 2, 4, 6, 8, 10].map((i) => [parts[i][1].length, parts[i + 1][1].length]));
  assert.equal(exchanges[3].error, true);
  assert.equal(redisCommandName(['XINFO', 'STREAM', 'x']), 'xinfo|stream');
  assert.equal(redisCommandName(['Debug', 'sleep']), 'debug');
});

test('Redis pipelining: 20 commands in one call, replies merged, split at every byte boundary', () => {
  const calls: Call[] = [];
  const cmds: string[] = [];
  const replies: string[] = [];
  for (let i = 0; i < 20; i++) {
    cmds.push(i % 2 ? cmd('GET', `key:${i}`) : cmd('SET', `key:${i}`, 'x'.repeat(i)));
    replies.push(i % 2 ? bulk('x'.repeat(i - 1)) : '+OK\r\n');
  }
  calls.push({ dir: 'tx', bytes: bytes(cmds.join('')), tsNs: 1 }, { dir: 'rx', bytes: bytes(replies.join('')), tsNs: 2 });
  const xs = run(calls).exchanges;
  assert.equal(xs.length, 20);
  assert.deepEqual(xs.map((x) => x.responseBytes), replies.map((r) => r.length));
  assert.deepEqual(xs.map((x) => x.requestBytes), cmds.map((r) => r.length));
  const few = conversation([['tx', cmds.slice(0, 3).join('')], ['rx', replies.slice(0, 3).join('')]]);
  assert.equal(everySplit(few).mismatch, null);
  assert.deepEqual(briefs(run(pieces(calls, 1)).exchanges), briefs(xs));
});

test('Redis: inline commands, RESP3 pushes and attributes are not replies, MULTI/EXEC', () => {
  const calls = conversation([
    ['tx', 'PING\r\n'], ['rx', '+PONG\r\n'],
    ['tx', cmd('HELLO', '3')], ['rx', '%1\r\n+server\r\n+redis\r\n'],
    ['tx', cmd('CLIENT', 'TRACKING', 'on')], ['rx', '+OK\r\n'],
    ['rx', '>2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n'], // out of band
    ['tx', cmd('GET', 'k')], ['rx', '|1\r\n+ttl\r\n:5\r\n$1\r\nv\r\n'],
    ['tx', cmd('MULTI') + cmd('INCR', 'a') + cmd('EXEC')], ['rx', '+OK\r\n+QUEUED\r\n*1\r\n:1\r\n'],
  ]);
  const xs = run(calls).exchanges;
  assert.deepEqual(xs.map((x) => `${x.operation} ${x.status}`), ['ping OK', 'hello OK', 'client|tracking OK', 'get OK', 'multi OK', 'incr OK', 'exec OK']);
  assert.equal(xs[0].detail.kind === 'redis' && xs[0].detail.inline, true);
});

test('Redis: a large value past the copy limit is skipped by its length and counted', () => {
  const value = 'v'.repeat(100_000);
  const set = bytes(cmd('SET', 'big', value));
  const calls: Call[] = [
    { dir: 'tx', bytes: set.subarray(0, 4096), length: set.length, tsNs: 1 },
    { dir: 'rx', bytes: bytes('+OK\r\n'), tsNs: 2 },
    { dir: 'tx', bytes: bytes(cmd('GET', 'big')), tsNs: 3 },
    { dir: 'rx', bytes: bytes(`$100000\r\n${value}\r\n`).subarray(0, 4096), length: value.length + 11, tsNs: 4 },
    { dir: 'tx', bytes: bytes(cmd('DEL', 'big')), tsNs: 5 },
    { dir: 'rx', bytes: bytes(':1\r\n'), tsNs: 6 },
  ];
  const xs = run(calls).exchanges;
  assert.deepEqual(xs.map((x) => `${x.operation} ${x.status} ${x.requestBytes} ${x.responseBytes}`), [
    `set OK ${set.length} 5`, `get OK ${cmd('GET', 'big').length} ${value.length + 11}`, `del OK ${cmd('DEL', 'big').length} 4`,
  ]);
});

test('Redis pub/sub: one reply per channel, messages are pushes; a gap in the framing stops decoding', () => {
  const calls = conversation([
    ['tx', cmd('SUBSCRIBE', 'a', 'b')],
    ['rx', '*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n'],
    ['rx', '*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n'],
    ['tx', cmd('PING')], ['rx', '*2\r\n$4\r\npong\r\n$0\r\n\r\n'],
  ]);
  const xs = run(merged(calls)).exchanges;
  assert.deepEqual(xs.map((x) => x.operation), ['subscribe', 'ping']);
  const gap = run(conversation([['tx', cmd('GET', 'a')], ['rx', bulk('1')], ['tx', cmd('GET', 'b')], ['rx', bulk('2')], ['tx', cmd('GET', 'c')], ['rx', bulk('3')]]), { transport: 'tcp' }, {}, new Set([3]));
  assert.deepEqual(gap.exchanges.map((x) => x.operation), ['get']);
  assert.equal(gap.decoder.status.state, 'undecodable');
});
