// SPDX-License-Identifier: MIT
// --l7 and --l7-snaplen as run and attach parse them (program.ts): off by default, the same on both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EXIT_USAGE, runCli, type CliActions, type TraceCliOptions } from '../../src/cli/program';

async function parse(argv: string[]): Promise<{ code: number; opts: TraceCliOptions | null; err: string }> {
  let opts: TraceCliOptions | null = null;
  let err = '';
  const take = async (o: TraceCliOptions) => {
    opts = o;
    return 0;
  };
  const actions: CliActions = { run: (_c, o) => take(o), attach: (_t, o) => take(o), report: async () => 0, doctor: async () => 0, cleanup: async () => 0 };
  const code = await runCli(['node', 'proctap', ...argv], actions, { out: () => {}, err: (s) => void (err += s) });
  return { code, opts, err };
}

test('--l7 is off by default and on with --l7, for run and attach alike; --l7-snaplen is checked', async () => {
  for (const head of [['run'], ['attach']]) {
    const tail = head[0] === 'run' ? ['--', 'true'] : ['1'];
    const off = await parse([...head, ...tail]);
    assert.equal(off.code, 0, off.err);
    assert.equal(off.opts!.l7, undefined);
    const on = await parse([...head, '--l7', '--l7-snaplen', '512', ...tail]);
    assert.equal(on.code, 0, on.err);
    assert.deepEqual([on.opts!.l7, on.opts!.l7Snaplen], [true, 512]);
    for (const bad of ['0', '8193', 'x']) {
      const r = await parse([...head, '--l7', '--l7-snaplen', bad, ...tail]);
      assert.equal(r.code, EXIT_USAGE, bad);
      assert.match(r.err, /not an L7 snaplen/);
    }
    const alone = await parse([...head, '--l7-snaplen', '512', ...tail]);
    assert.equal(alone.code, EXIT_USAGE);
    assert.match(alone.err, /--l7-snaplen needs --l7/);
    const hidden = await parse([...head, '--l7-data', '512', ...tail]);
    assert.equal(hidden.code, EXIT_USAGE, 'the old test option is gone');
  }
});
