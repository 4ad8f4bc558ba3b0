// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatArgv,
  formatBytes,
  formatCount,
  formatDuration,
  formatEndpoint,
  formatExit,
  signalName,
  truncate,
} from '../../src/util/format';

test('formatBytes: IEC units, one decimal below 100, carries at 1024', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1), '1 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1024), '1.0 KiB');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(Math.round(12.3 * 1024 * 1024)), '12.3 MiB');
  assert.equal(formatBytes(100 * 1024), '100 KiB');
  assert.equal(formatBytes(99.97 * 1024), '100 KiB');
  assert.equal(formatBytes(1024 * 1024 - 1), '1.0 MiB');
  assert.equal(formatBytes(1023 * 1024), '1023 KiB');
  assert.equal(formatBytes(5 * 1024 ** 3), '5.0 GiB');
  assert.equal(formatBytes(2 * 1024 ** 4), '2.0 TiB');
  // Never wider than 8 characters, whatever the magnitude.
  for (let n = 1; n < 2 ** 50; n = Math.floor(n * 1.37) + 1) assert.ok(formatBytes(n).length <= 8, formatBytes(n));
});

test('formatCount: exact with thousands separators', () => {
  assert.equal(formatCount(0), '0');
  assert.equal(formatCount(999), '999');
  assert.equal(formatCount(1000), '1,000');
  assert.equal(formatCount(1234567), '1,234,567');
  assert.equal(formatCount(-4200), '-4,200');
});

test('formatDuration: ms, seconds, minutes, hours', () => {
  assert.equal(formatDuration(0), '0 ms');
  assert.equal(formatDuration(0.42), '0.42 ms');
  assert.equal(formatDuration(2.5), '2.5 ms');
  assert.equal(formatDuration(850), '850 ms');
  assert.equal(formatDuration(999.4), '999 ms');
  assert.equal(formatDuration(999.7), '1.00 s');
  assert.equal(formatDuration(1250), '1.25 s');
  assert.equal(formatDuration(59_999), '1m00s');
  assert.equal(formatDuration(123_000), '2m03s');
  assert.equal(formatDuration(3_723_000), '1h02m03s');
});

test('formatEndpoint: IPv6 in brackets, IPv4 plain, "*" for unknown', () => {
  assert.equal(formatEndpoint('::1', 8080), '[::1]:8080');
  assert.equal(formatEndpoint('2001:db8::1', 443), '[2001:db8::1]:443');
  assert.equal(formatEndpoint('127.0.0.1', 80), '127.0.0.1:80');
  assert.equal(formatEndpoint('*', 0), '*');
  assert.equal(formatEndpoint('*', 5353), '*:5353');
});

test('formatExit: codes and signals', () => {
  assert.equal(formatExit(0, null), '0');
  assert.equal(formatExit(1, null), '1');
  assert.equal(formatExit(143, 15), 'killed by SIGTERM (143)');
  assert.equal(formatExit(137, 9), 'killed by SIGKILL (137)');
  assert.equal(formatExit(null, 11), 'killed by SIGSEGV (139)');
  assert.equal(formatExit(null, null), 'unknown');
  assert.equal(signalName(2), 'SIGINT');
  assert.equal(signalName(13), 'SIGPIPE');
  assert.equal(signalName(40), 'signal 40');
});

test('formatArgv: shell quoting for display and truncation', () => {
  assert.equal(formatArgv(['curl', '-s', 'http://example.com/a?b=c']), "curl -s 'http://example.com/a?b=c'");
  assert.equal(formatArgv(['sh', '-c', 'echo hi; exit 1']), "sh -c 'echo hi; exit 1'");
  assert.equal(formatArgv(['echo', "it's"]), "echo 'it'\\''s'");
  assert.equal(formatArgv(['printf', '']), "printf ''");
  assert.equal(formatArgv(['printf', 'a\nb']), "printf $'a\\nb'");
  assert.equal(formatArgv(['/usr/bin/env', 'A=1', 'x.y/z']), '/usr/bin/env A=1 x.y/z');
  assert.equal(formatArgv([]), '');
  const cut = formatArgv(['python3', '-c', 'import socket; print(socket.gethostname())'], 20);
  assert.equal(Array.from(cut).length, 20);
  assert.ok(cut.endsWith('…'));
  assert.ok(cut.startsWith('python3 -c '));
  assert.equal(formatArgv(['ls'], 20), 'ls');
});

test('truncate: code points, never longer than max', () => {
  assert.equal(truncate('abcdef', 6), 'abcdef');
  assert.equal(truncate('abcdef', 4), 'abc…');
  assert.equal(truncate('😀😀😀', 2), '😀…');
  assert.equal(truncate('abc', 0), '');
});
