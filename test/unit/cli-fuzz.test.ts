// SPDX-License-Identifier: MIT
// Fuzzing the option parser: thousands of random and adversarial argv vectors through the real parsing
// layer (program.ts) with recording actions. Whatever the input: exit 0 (help, version, or an action
// reached) or 2 (usage), never a crash or a stack trace, an error is one line, and no file is created.
// PROCTAP_FUZZ_SEED=N replays a run; the seed is printed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXIT_USAGE, runCli, traceCliOptions, type CliActions, type CliOutput } from '../../src/cli/program';

/** mulberry32: small, seeded, good enough to pick tokens. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COMMANDS = ['run', 'attach', 'report', 'doctor', 'cleanup', 'help', 'rUn', 'frobnicate', ''];
const FLAGS = [
  '--json', '--chart', '--events', '--detail', '--interval', '--live', '--backend', '--flow-interval', '--ring-buffer',
  '-o', '--pcap', '--pcap-format', '-f', '--pcap-filter', '--snaplen', '--force', '-q', '--quiet', '--no-color',
  '-u', '--user', '--comm', '--cgroup', '--duration', '--no-children', '--help', '-h', '--version', '-V',
  '--isolate', '-d', '--device', '--use-public-dns', '--no-ip-forward', '--netns-capture', '--no-dns-names', '--no-retransmits',
  '--bogus', '-z', '--json=', '--ring-buffer=8M', '--snaplen=0', '-qo', '-of', '---', '--no-', '--=x',
];
const VALUES = [
  '8M', '4K', '3K', '1G', '2G', '0', '-1', '1e9', '0x10', '100ms', '1s', '2m', '1h', '0.5', 'NaN', 'Infinity', '',
  ' ', '-', '--', 'auto', 'tracepoint', 'fentry', 'kprobe', 'pcap', 'pcapng', 'tcp port 443', 'tcp port nonsense',
  'eth0', 'eth0;reboot', 'a234567890123456', 'root', 'nobody', '65534', '4194304', '4194305', '1', 'x'.repeat(3000), 'a\nb', 'é∂ƒ', '$(touch pwned)', '`id`',
  '; rm -rf /', '../../etc/passwd', '/dev/null', 'out.json', 'out.pcapng', '%s%n', '\u202e', '\t',
];

function token(rand: () => number): string {
  const r = rand();
  if (r < 0.12) return COMMANDS[Math.floor(rand() * COMMANDS.length)];
  if (r < 0.5) return FLAGS[Math.floor(rand() * FLAGS.length)];
  if (r < 0.9) return VALUES[Math.floor(rand() * VALUES.length)];
  // random printable and control characters
  const len = 1 + Math.floor(rand() * 12);
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(1 + Math.floor(rand() * 0x17f));
  return s;
}

function vector(rand: () => number): string[] {
  const argv = [COMMANDS[Math.floor(rand() * 6)]];
  // attach needs a pid or a target option before anything else counts: give half of them one, so the
  // action is reached often enough to be asserted (random tokens alone reach it ~1 in 1000).
  if (argv[0] === 'attach' && rand() < 0.5) argv.push(String(1 + Math.floor(rand() * 4194304)));
  const n = Math.floor(rand() * 9);
  for (let i = 0; i < n; i++) argv.push(token(rand));
  if (rand() < 0.4) argv.push('--', ...(rand() < 0.8 ? ['true'] : []));
  return argv;
}

test('option parser fuzz: exit 0 or 2, one-line errors, no stack trace, no file created', async (t) => {
  const seed = Number(process.env.PROCTAP_FUZZ_SEED ?? Date.now() % 2 ** 31);
  t.diagnostic(`seed ${seed} (PROCTAP_FUZZ_SEED=${seed} replays it)`);
  const rand = prng(seed);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-faults-fuzz-'));
  const cwd = process.cwd();
  process.chdir(dir);
  const reached: Record<string, number> = {};
  const record = (name: string) => async () => {
    reached[name] = (reached[name] ?? 0) + 1;
    return 0;
  };
  const actions: CliActions = {
    run: async (command, opts) => {
      traceCliOptions(opts); // what reaches an action is typed as it claims
      assert.ok(command.length > 0);
      return record('run')();
    },
    attach: async (targets, opts) => {
      traceCliOptions(opts);
      assert.ok(targets.pids.every((p) => Number.isInteger(p) && p > 0));
      return record('attach')();
    },
    report: record('report'),
    doctor: record('doctor'),
    cleanup: record('cleanup'),
  };
  try {
    for (let i = 0; i < 3000; i++) {
      const argv = vector(rand);
      let out = '';
      let err = '';
      const output: CliOutput = { out: (s) => void (out += s), err: (s) => void (err += s) };
      const code = await runCli(['node', 'proctap', ...argv], actions, output);
      const what = `seed ${seed} #${i}: proctap ${JSON.stringify(argv)} -> ${code}: ${err}`;
      assert.ok(code === 0 || code === EXIT_USAGE, what);
      assert.doesNotMatch(err + out, /^\s+at .*:\d+:\d+\)?$/m, what);
      // stderr carries one error line, or (for no command at all) the usage text
      if (err && !err.startsWith('Usage:')) {
        assert.equal(err.endsWith('\n') && err.split('\n').length, 2, what);
        assert.match(err, /^(error: |proctap: )/, what);
      }
      if (code === EXIT_USAGE) assert.ok(err.length > 0, `${what}: a usage error says why`);
    }
  } finally {
    process.chdir(cwd);
    const left = fs.readdirSync(dir);
    fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left, [], 'the parser created no file');
  }
  t.diagnostic(`actions reached: ${JSON.stringify(reached)}`);
  assert.ok((reached.run ?? 0) > 0 && (reached.attach ?? 0) > 0, `the fuzz reaches the actions: ${JSON.stringify(reached)}`);
});
