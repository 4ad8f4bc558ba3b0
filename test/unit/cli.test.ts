// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { oneLine, parseMilliseconds, parseRingBufferSize, parseSize } from '../../src/cli/program';
import { commandEnvironment } from '../../src/proc/launch';
import { lostRecordsWarning } from '../../src/render/warnings';
import { missingCapabilities, parsePasswd, resolveCredentials } from '../../src/cli/privileges';
import { cgroupOwner, findCgroup2Mount } from '../../src/proc/cgroup';
import { formatAddress } from '../../src/util/net';

test('the cgroup v2 mount is found in mountinfo, hybrid or unified, with escapes', () => {
  const hybrid = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  ].join('\n');
  assert.equal(findCgroup2Mount(hybrid), '/sys/fs/cgroup/unified');
  assert.equal(findCgroup2Mount('29 1 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate'), '/sys/fs/cgroup');
  assert.equal(findCgroup2Mount('29 1 0:26 / /mnt/my\\040cg rw - cgroup2 none rw'), '/mnt/my cg');
  assert.equal(findCgroup2Mount(hybrid.split('\n')[0]), null);
});

test('only proctap-owned cgroup names are claimed by cleanup', () => {
  assert.equal(cgroupOwner('proctap-1234-run'), 1234);
  assert.equal(cgroupOwner('proctap-x-run'), null);
  assert.equal(cgroupOwner('system.slice'), null);
  assert.equal(cgroupOwner('proctap-1234-run/../x'), null);
});

test('sizes and durations parse; bad values are refused', () => {
  assert.equal(parseSize('8M'), 8 * 1024 * 1024);
  assert.equal(parseSize('512k'), 512 * 1024);
  assert.equal(parseRingBufferSize('64K'), 65536);
  assert.throws(() => parseRingBufferSize('100K'), /power of two/);
  assert.throws(() => parseSize('lots'), /not a size/);
  assert.equal(parseMilliseconds('1s'), 1000);
  assert.equal(parseMilliseconds('250'), 250);
  assert.throws(() => parseMilliseconds('0'), /not a duration/);
});

test('the capabilities proctap needs are named when missing', () => {
  assert.deepEqual(missingCapabilities('CapEff:\t000001ffffffffff\n'), []);
  assert.deepEqual(missingCapabilities('CapEff:\t0000000000000000\n'), ['CAP_BPF', 'CAP_PERFMON', 'CAP_NET_ADMIN', 'CAP_SYS_ADMIN']);
  assert.deepEqual(missingCapabilities('CapEff:\t0000000000201000\n'), ['CAP_BPF', 'CAP_PERFMON']);
});

test('the command runs as the sudo caller unless --user says otherwise', () => {
  const passwd = parsePasswd('root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1001:Alice:/home/alice:/bin/sh\n');
  assert.deepEqual(resolveCredentials(undefined, { SUDO_UID: '1000', SUDO_GID: '1001' }, passwd), { uid: 1000, gid: 1001 });
  assert.equal(resolveCredentials(undefined, {}, passwd), null);
  assert.equal(resolveCredentials('root', { SUDO_UID: '1000' }, passwd), null);
  assert.deepEqual(resolveCredentials('alice', {}, passwd), { uid: 1000, gid: 1001 });
  assert.deepEqual(resolveCredentials('4242', {}, passwd), { uid: 4242, gid: 4242 });
  assert.throws(() => resolveCredentials('mallory', {}, passwd), /unknown user 'mallory'/);
});

test('addresses print the way people write them', () => {
  assert.equal(formatAddress(2, new Uint8Array([127, 0, 0, 1])), '127.0.0.1');
  assert.equal(formatAddress(2, new Uint8Array(4)), '*');
  const v6 = new Uint8Array(16);
  v6.set([0x20, 0x01, 0x0d, 0xb8], 0);
  v6[15] = 1;
  assert.equal(formatAddress(10, v6), '2001:db8::1');
  const noRun = new Uint8Array([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
  assert.equal(formatAddress(10, noRun), '1:2:3:4:5:6:7:8');
});

test('the traced command gets back the NODE_* and OPENSSL_* variables bin/proctap set aside, nothing else', () => {
  const env = commandEnvironment({
    PATH: '/bin',
    PROCTAP_SAVED_NODE_OPTIONS: '--require x.js',
    PROCTAP_SAVED_OPENSSL_CONF: '/etc/x.cnf',
    PROCTAP_SAVED_LD_PRELOAD: '/x.so',
    PROCTAP_SAVED_NODE_: 'no name',
  });
  assert.deepEqual(env, { PATH: '/bin', NODE_OPTIONS: '--require x.js', OPENSSL_CONF: '/etc/x.cnf' });
});

test('a full ring buffer is one stderr line naming the lost kinds; nothing lost, no line', () => {
  const lost = { records: 7, recordsByKind: { exit: 2, call: 5 }, flowTableFullCalls: 0, flowTableFullBytes: 0, tracedTableFull: 0, procConnectorOverflows: 0 };
  assert.equal(
    lostRecordsWarning(lost),
    'proctap: warning: ring buffer full: 7 records lost (call 5, exit 2); byte and call totals are still exact (kernel counters); a larger --ring-buffer keeps them',
  );
  assert.equal(lostRecordsWarning({ ...lost, records: 0, recordsByKind: {} }), null);
});

test('error messages are one line, whatever the values in them', () => {
  assert.equal(oneLine("error: unknown option '--jsno'\n(Did you mean --json?)\n"), "error: unknown option '--jsno' (Did you mean --json?)");
  assert.equal(oneLine("not a size: 'a\nb'"), "not a size: 'a b'");
});
