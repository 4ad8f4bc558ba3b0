// SPDX-License-Identifier: MIT
// doctor and backend selection on this kernel (6.18: kprobes compiled out, fentry refused), and the
// one-line errors of bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { PROCTAP, proctapCgroups } from './harness';

function proctap(args: string[]) {
  const r = spawnSync(PROCTAP, args, { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('doctor probes every backend for real and names the one run would use', () => {
  const r = proctap(['doctor', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout);
  const byName = Object.fromEntries(result.backends.map((b: { backend: string }) => [b.backend, b]));
  assert.deepEqual(result.backends.map((b: { backend: string }) => b.backend), ['fentry', 'tracepoint', 'kprobe']);
  assert.equal(byName.tracepoint.usable, true);
  assert.equal(result.selectedBackend, byName.fentry.usable ? 'fentry' : 'tracepoint');
  for (const c of result.checks) assert.equal(typeof c.ok, 'boolean');
  const names = result.checks.map((c: { name: string }) => c.name);
  for (const n of ['privileges', 'kernel BTF', 'cgroup v2', 'kprobes', 'cgroup hooks', 'proc connector']) assert.ok(names.includes(n), n);
  assert.ok(result.checks.find((c: { name: string }) => c.name === 'cgroup v2').ok);
  assert.deepEqual(proctapCgroups(), [], 'doctor removes its probe cgroup');
});

test('on a kernel without kprobes the kprobe programs still pass the verifier, and fentry is refused cleanly', (t) => {
  const result = JSON.parse(proctap(['doctor', '--json']).stdout);
  const kprobe = result.backends.find((b: { backend: string }) => b.backend === 'kprobe');
  const fentry = result.backends.find((b: { backend: string }) => b.backend === 'fentry');
  const kprobesPresent = result.checks.find((c: { name: string }) => c.name === 'kprobes').ok;
  if (kprobesPresent) {
    t.diagnostic('this kernel has kprobes: the kprobe backend must be usable');
    assert.equal(kprobe.usable, true, kprobe.reason);
  } else {
    assert.equal(kprobe.loads, true, `kprobe programs must pass the verifier: ${kprobe.reason}`);
    assert.equal(kprobe.usable, false);
    assert.match(kprobe.reason, /cannot attach/);
  }
  if (!fentry.usable) assert.match(fentry.reason, /refused at load|cannot attach/);
});

test('a forced backend that cannot work is a one-line error, exit 125, and leaves nothing behind', () => {
  const result = JSON.parse(proctap(['doctor', '--json']).stdout);
  for (const b of result.backends.filter((x: { usable: boolean }) => !x.usable)) {
    const r = proctap(['run', '--backend', b.backend, '--', 'true']);
    assert.equal(r.code, 125);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], new RegExp(`^proctap: backend ${b.backend}: `));
  }
  assert.deepEqual(proctapCgroups(), []);
});

test('bad input: unknown option, missing command, bad value: one clear line, usage exit code', () => {
  for (const args of [['run', '--bogus', '--', 'true'], ['run'], ['run', '--ring-buffer', '3K', '--', 'true'], ['frobnicate']]) {
    const r = proctap(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^error: [^\n]*\n$/, args.join(' '));
  }
  const bad = proctap(['report', '/nonexistent.json']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^proctap: cannot read report \/nonexistent.json/);
});
