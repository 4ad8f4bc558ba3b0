// SPDX-License-Identifier: MIT
// The command line's parsing layer: commands, options, value parsers and the checks that need no system
// access. Pure: every effect is an action handed in (main.ts has the real ones), so tests drive it with
// any argv (test/unit/cli-fuzz.test.ts) without loading BPF or creating a file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option, type OptionValues } from 'commander';
import type { Backend } from '../schema/report';
import type { TestHooks } from '../trace/test-hooks';
import { MAX_SNAPLEN, type CaptureFormat } from '../pcap/capture';
import { checkInterfaceName } from '../isolate/plan';
import { fleetOptionProblem, parseFileCount, parseFileSize, parseListenAddress, parseMetricsTop, parseRotateSeconds, type ListenAddress } from './fleet-options';
import { PROCTAP_DATA_SNAPLEN, PROCTAP_DATA_SNAPLEN_MAX } from '../native/layout.generated';
import { formatArgv } from '../util/format';

export const VERSION: string = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../../package.json'), 'utf8')).version;

/** Exit code for proctap's own failures in `run` (the command's own codes pass through unchanged). */
export const EXIT_PROCTAP_FAILED = 125;
export const EXIT_USAGE = 2;

export class UsageError extends Error {}

export function parseSize(text: string): number {
  const m = /^(\d+)([kKmMgG]?)i?[bB]?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`not a size: '${text}' (e.g. 8M, 512K)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

/** Ring buffer size: a power of two, at least one page. */
/** The kernel ring buffer by default; with a capture (-o), whose packets of bulk loopback traffic (GSO, up
 *  to 64 KiB each) fill 8 MiB in a few milliseconds, more: the consumer's wakeup may be that late on a
 *  busy machine (tcpdump's -B, for the same reason). */
export const RING_BUFFER_BYTES = 8 << 20;
export const CAPTURE_RING_BUFFER_BYTES = 64 << 20;

export function parseRingBufferSize(text: string): number {
  const n = parseSize(text);
  if (n < 4096 || (n & (n - 1)) !== 0 || n > 1024 ** 3) {
    throw new InvalidArgumentError(`ring buffer size must be a power of two between 4K and 1G, got '${text}'`);
  }
  return n;
}

export function parseSnaplen(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > MAX_SNAPLEN) throw new InvalidArgumentError(`snaplen must be 1..${MAX_SNAPLEN}, got '${text}'`);
  return n;
}

/** 30s, 500ms, 2m, 1h, or plain seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m || Number(m[1]) <= 0) throw new InvalidArgumentError(`not a duration: '${text}' (e.g. 30s, 500ms, 2m)`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
}

export function parsePid(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 4194304) throw new InvalidArgumentError(`not a pid: '${text}'`);
  return Number(text);
}

/**
 * The tests' hooks (docs/reliability.md), one `--test-hook NAME=VALUE` each, hidden from --help:
 *   inject-fault=uncaught-exception|unhandled-rejection   an internal error 300 ms into the trace
 *   proc-connector-buffer=BYTES                            the proc connector's receive queue (1..256 MiB)
 *   proc-connector-pause=MS                                the connector is not read for the first MS
 *   finish-delay=MS                                        finishing takes MS longer (the progress line)
 */
export function parseTestHook(text: string, hooks: TestHooks = {}): TestHooks {
  const m = /^([a-z-]+)=(.*)$/.exec(text);
  const [name, value] = m ? [m[1], m[2]] : [text, ''];
  switch (name) {
    case 'inject-fault':
      if (value !== 'uncaught-exception' && value !== 'unhandled-rejection') throw new InvalidArgumentError(`inject-fault must be uncaught-exception or unhandled-rejection, got '${value}'`);
      return { ...hooks, injectFault: value };
    case 'proc-connector-buffer': {
      const n = Number(value);
      if (!/^\d+$/.test(value) || n < 1 || n > 256 * 1024 * 1024) throw new InvalidArgumentError(`not a buffer size in bytes (1 to 268435456): '${value}'`);
      return { ...hooks, procConnectorBufferBytes: n };
    }
    case 'proc-connector-pause':
      return { ...hooks, procConnectorPauseMs: parseMilliseconds(value) };
    case 'finish-delay':
      return { ...hooks, finishDelayMs: parseMilliseconds(value) };
    default:
      throw new InvalidArgumentError(`unknown test hook '${name}'`);
  }
}

/** A count of items to keep: 0 to 1,000,000. */
export function parseCount(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > 1_000_000) throw new InvalidArgumentError(`not a count (0 to 1000000): '${text}'`);
  return n;
}

function parseL7Snaplen(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > PROCTAP_DATA_SNAPLEN_MAX) throw new InvalidArgumentError(`not an L7 snaplen (1 to ${PROCTAP_DATA_SNAPLEN_MAX}): '${text}'`);
  return n;
}

export function parseMilliseconds(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (!m || Number(m[1]) <= 0) throw new InvalidArgumentError(`not a duration: '${text}' (e.g. 100ms, 1s)`);
  return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
}

/** Options shared by run and attach. */
function addTraceOptions(command: Command): Command {
  return command
    .option('--json <file>', 'write the JSON report (schemaVersion 1) to FILE, "-" for stdout')
    .option('--chart <dir>', 'write PNG charts (throughput, message sizes, endpoints, connections) to DIR')
    .option('--events <file>', 'NDJSON stream of records as they arrive, "-" for stdout')
    .option('--detail', 'with --events: one record per send/recv call')
    .option('--interval <ms>', 'time-series bucket width (default: from the trace length); with a terminal, refresh period of --live', parseMilliseconds)
    .option('--live', 'a refreshing top-like view of per-process and per-endpoint rates while tracing (terminal only)')
    .addOption(new Option('--backend <name>', 'socket I/O hooks').choices(['auto', 'tracepoint', 'fentry', 'kprobe']).default('auto'))
    .option('--flow-interval <ms>', 'minimum time between two kernel updates of one flow', parseMilliseconds, 100)
    .option('--ring-buffer <size>', 'kernel ring buffer size (power of two; default 8M, 64M with -o)', parseRingBufferSize)
    .option('-o, --pcap <file>', 'capture the traced processes\' packets to FILE ("-" for stdout; run then moves the command\'s own stdout to stderr)')
    .addOption(new Option('--pcap-format <format>', 'capture file format').choices(['pcapng', 'pcap']).default('pcapng'))
    .option('-f, --pcap-filter <expr>', 'tcpdump filter for the capture, e.g. "tcp port 443"')
    .option('--snaplen <bytes>', 'bytes kept per packet (default: whole packet, up to 262144)', parseSnaplen, MAX_SNAPLEN)
    .option('-C, --file-size <size>', 'with -o FILE: start a new file once one is larger than SIZE millions of bytes (k, m, g: KiB, MiB, GiB), as tcpdump', parseFileSize)
    .option('-G, --rotate-seconds <s>', 'with -o FILE: start a new file every S seconds; FILE is a strftime pattern, as tcpdump', parseRotateSeconds)
    .option('-W, --file-count <n>', 'with -C: a ring of N files; with -G alone: stop capturing after N files, as tcpdump', parseFileCount)
    .option('--metrics <host:port>', 'serve Prometheus metrics on /metrics while tracing (loopback unless HOST says otherwise)', parseListenAddress)
    .option('--metrics-top <n>', 'with --metrics: remotes and processes with a series of their own, by bytes (default 20; the rest is "other")', parseMetricsTop)
    .option('--no-dns-names', 'do not learn remote names from the DNS answers the traced processes receive')
    .option('--no-retransmits', 'do not count TCP retransmits per connection')
    .option('--no-tls-plaintext', 'with --l7 or --events: do not hook the TLS libraries of the traced processes (uprobes) for their plaintext')
    .option('--no-tls-keylog', '(run -o) do not hand the command a TLS key log (SSLKEYLOGFILE) for the capture')
    .option('--force', 'overwrite existing output files (never through a symbolic link)')
    .option('--keep-connections <n>', 'closed connections listed one by one: the N newest, N largest and N failed; the rest are folded per endpoint', parseCount, 500)
    .option('--keep-processes <n>', 'exited processes listed one by one: the N newest, N largest and N failed; the rest are folded per parent and command', parseCount, 200)
    .option('--all-processes', 'list every process in the terminal report (default: those that moved no byte are one line under their parent)')
    .option('-q, --quiet', 'no terminal report')
    .option('--no-color', 'no colors in the terminal report')
    .option('--l7', 'decode what the traced processes say (HTTP/1, HTTP/2, gRPC, TLS handshakes, DNS, Redis, PostgreSQL): requests, statuses, latencies per process and endpoint (costs CPU per call of those connections)')
    .option('--l7-snaplen <bytes>', `with --l7: bytes copied per send/recv call (1 to ${PROCTAP_DATA_SNAPLEN_MAX}, default ${PROCTAP_DATA_SNAPLEN})`, parseL7Snaplen)
    // The tests' hooks (fault injection, a proc connector that overflows): parseTestHook, docs/reliability.md.
    .addOption(new Option('--test-hook <name=value>', 'test only').argParser((v: string, prev?: TestHooks) => parseTestHook(v, prev)).hideHelp());
}

/** The options of run and attach, as commander parsed them (its values are untyped). */
export interface TraceCliOptions {
  json?: string;
  chart?: string;
  events?: string;
  detail?: boolean;
  interval?: number;
  live?: boolean;
  backend: Backend | 'auto';
  flowInterval: number;
  /** Absent: RING_BUFFER_BYTES, or CAPTURE_RING_BUFFER_BYTES with a capture. */
  ringBuffer?: number;
  pcap?: string;
  pcapFormat: CaptureFormat;
  pcapFilter?: string;
  snaplen: number;
  fileSize?: number;
  rotateSeconds?: number;
  fileCount?: number;
  metrics?: ListenAddress;
  metricsTop?: number;
  force?: boolean;
  quiet?: boolean;
  color: boolean;
  dnsNames: boolean;
  retransmits: boolean;
  tlsPlaintext: boolean;
  tlsKeylog: boolean;
  keepConnections: number;
  keepProcesses: number;
  allProcesses?: boolean;
  testHook?: TestHooks;
  l7?: boolean;
  l7Snaplen?: number;
}

/** Commander's untyped option values as TraceCliOptions; a value of the wrong type is a bug here, not bad input. */
export function traceCliOptions(raw: OptionValues): TraceCliOptions {
  const is = (key: string, type: 'string' | 'number' | 'boolean' | 'object', required = false) => {
    const v = raw[key];
    if ((v !== undefined || required) && typeof v !== type) throw new TypeError(`option ${key}: expected a ${type}, got ${typeof v}`);
  };
  for (const k of ['json', 'chart', 'events', 'pcap', 'pcapFilter']) is(k, 'string');
  for (const k of ['detail', 'live', 'force', 'quiet', 'allProcesses', 'l7']) is(k, 'boolean');
  is('interval', 'number');
  if (raw.testHook !== undefined && (typeof raw.testHook !== 'object' || raw.testHook === null)) throw new TypeError(`option testHook: expected an object, got ${typeof raw.testHook}`);
  for (const k of ['fileSize', 'rotateSeconds', 'fileCount', 'metricsTop', 'l7Snaplen']) is(k, 'number');
  is('metrics', 'object');
  for (const k of ['dnsNames', 'retransmits', 'tlsPlaintext', 'tlsKeylog']) is(k, 'boolean', true);
  for (const k of ['flowInterval', 'snaplen', 'keepConnections', 'keepProcesses']) is(k, 'number', true);
  is('ringBuffer', 'number');
  for (const k of ['backend', 'pcapFormat']) is(k, 'string', true);
  is('color', 'boolean', true);
  return raw as TraceCliOptions;
}

/** Output options that contradict each other: refused before anything starts. */
export function checkOutputOptions(opts: TraceCliOptions): void {
  const stdout = [opts.json, opts.pcap, opts.events].filter((t) => t === '-');
  if (stdout.length > 1) throw new UsageError('only one of --json, --pcap and --events can use standard output');
  if (opts.detail && !opts.events) throw new UsageError('--detail needs --events FILE');
  if (opts.l7Snaplen !== undefined && !opts.l7) throw new UsageError('--l7-snaplen needs --l7');
  if (opts.pcapFilter !== undefined && !opts.pcap) throw new UsageError('--pcap-filter needs --pcap FILE');
  const fleet = fleetOptionProblem(opts);
  if (fleet) throw new UsageError(fleet);
}

/** run --isolate and its options (docs/isolate.md). */
export interface IsolateCliOptions {
  device?: string;
  forwarding: boolean;
  publicDns: boolean;
}

/** --isolate's options: refused when they come without it; a device name is checked up front. */
export function isolateOptions(raw: OptionValues): IsolateCliOptions | undefined {
  if (!raw.isolate) {
    const stray = [raw.device !== undefined && '--device', raw.usePublicDns && '--use-public-dns', raw.ipForward === false && '--no-ip-forward'].filter(Boolean);
    if (stray.length) throw new UsageError(`${stray.join(', ')} needs --isolate`);
    return undefined;
  }
  if (raw.device !== undefined) {
    try {
      checkInterfaceName(String(raw.device));
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  return { device: raw.device as string | undefined, forwarding: raw.ipForward !== false, publicDns: raw.usePublicDns === true };
}

export interface AttachTargets {
  pids: number[];
  /** --netns-capture: libpcap on every interface of the targets' network namespaces. */
  netnsCapture?: boolean;
  comm?: string;
  cgroup?: string;
  container?: string;
  durationMs?: number;
  followChildren: boolean;
}

/** What each command does once its arguments are parsed and checked; each resolves to the exit code. */
export interface CliActions {
  run(command: string[], opts: TraceCliOptions, user: string | undefined, isolate?: IsolateCliOptions): Promise<number>;
  attach(targets: AttachTargets, opts: TraceCliOptions): Promise<number>;
  report(file: string, opts: { chart?: string; color: boolean; allProcesses?: boolean }): Promise<number>;
  doctor(opts: { json: boolean }): Promise<number>;
  cleanup(): Promise<number>;
}

export interface CliOutput {
  out(text: string): void;
  err(text: string): void;
}

export const processOutput: CliOutput = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

/** An error message on one line: values given on the command line may hold newlines. */
export function oneLine(message: string): string {
  return message.trim().replace(/\s*\n\s*/g, ' ');
}

export function buildProgram(actions: CliActions, output: CliOutput, exit: (code: number) => void): Command {
  const program = new Command('proctap')
    .description('eBPF per-process network tracer: what a process tree talks to, how much, in what pattern')
    .version(VERSION)
    .exitOverride()
    .configureOutput({
      writeOut: output.out,
      writeErr: output.err,
      // one line, with the hint where to look (commander's own suggestions come on a second line)
      outputError: (text, write) => write(`${oneLine(text)} (proctap --help for usage)\n`),
    });

  const run = program
    .command('run')
    .description('trace a launched command and every descendant; exits with the command\'s exit code')
    .usage('[options] -- COMMAND [ARGS...]')
    .argument('<command...>', 'command and arguments (put -- before it)')
    .option('-u, --user <name|uid>', 'run the command as this user (default: the sudo caller; "root" to keep root)')
    .option('--isolate', 'run the command in a network namespace of its own (veth pair + NAT), as nsntrace does')
    .option('-d, --device <name>', 'with --isolate: NAT out of this device (default: the default route\'s)')
    .option('--use-public-dns', 'with --isolate: public nameservers in the namespace\'s resolv.conf')
    .option('--no-ip-forward', 'with --isolate: do not turn on IP forwarding (refuse if it is off)');
  // `proctap run curl -s URL`: the command's own options look like proctap's; say where they go. (Here
  // commander has parsed: run.args is the operands, then the first unknown option and what follows.)
  run.configureOutput({
    outputError: (text, write) => {
      const flag = /unknown option '([^']+)'/.exec(text)?.[1];
      const hint = flag !== undefined && run.args.length > 0 && run.args[0] !== flag ? `; the command goes after --, as in: proctap run [options] -- ${formatArgv(run.args, 120)}` : '';
      write(`${oneLine(oneLine(text) + hint)} (proctap --help for usage)\n`);
    },
  });
  addTraceOptions(run).action(async (command: string[], raw: OptionValues) => {
    const opts = traceCliOptions(raw);
    checkOutputOptions(opts);
    const isolate = isolateOptions(raw);
    exit(await actions.run(command, opts, raw.user as string | undefined, isolate));
  });

  const attach = program
    .command('attach')
    .description('trace running processes and their future children, until they exit, Ctrl-C or --duration')
    .usage('[options] PID... | --comm NAME | --cgroup PATH | --container ID|NAME')
    .argument('[pids...]', 'processes to trace')
    .option('--comm <name>', 'every process whose comm is NAME, now and later')
    .option('--cgroup <path>', 'every process in this cgroup v2 (path below the cgroup2 mount), now and later')
    .option('--container <id|name>', 'every process of this container (docker, podman, containerd, cri-o, nspawn, lxc), now and later')
    .option('--duration <time>', 'stop after this long (e.g. 30s, 2m)', parseDuration)
    .option('--no-children', 'trace only the listed processes: not their children running now (a note names them), nor those forked later')
    .option('--netns-capture', 'with -o: capture every interface of the targets\' network namespaces (libpcap), not only their sockets\' packets');
  addTraceOptions(attach).action(async (pidArgs: string[], raw: OptionValues) => {
    const opts = traceCliOptions(raw);
    const pids = pidArgs.map((p) => {
      try {
        return parsePid(p);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
    });
    if (pids.length === 0 && raw.comm === undefined && raw.cgroup === undefined && raw.container === undefined) {
      throw new UsageError('attach needs PIDs, --comm NAME, --cgroup PATH or --container ID|NAME');
    }
    if (raw.cgroup !== undefined && raw.container !== undefined) throw new UsageError('--container is a cgroup of its own: give --cgroup or --container, not both');
    checkOutputOptions(opts);
    if (raw.netnsCapture && !opts.pcap) throw new UsageError('--netns-capture needs -o/--pcap FILE');
    const targets: AttachTargets = {
      pids,
      netnsCapture: raw.netnsCapture === true,
      comm: raw.comm as string | undefined,
      cgroup: raw.cgroup as string | undefined,
      container: raw.container as string | undefined,
      durationMs: raw.duration as number | undefined,
      followChildren: raw.children !== false,
    };
    exit(await actions.attach(targets, opts));
  });

  program
    .command('report')
    .description('re-render a saved JSON report')
    .argument('<file>', 'report written by --json')
    .option('--chart <dir>', 'also write the PNG charts to DIR')
    .option('--no-color', 'no colors')
    .option('--all-processes', 'list every process (default: those that moved no byte are one line under their parent)')
    .action(async (file: string, raw: OptionValues) =>
      exit(await actions.report(file, { chart: raw.chart as string | undefined, color: raw.color !== false, allProcesses: raw.allProcesses === true })),
    );

  program
    .command('doctor')
    .description('what this kernel allows: hooks, backends, cgroup v2, BTF, proc connector')
    .option('--json', 'machine-readable output')
    .action(async (raw: OptionValues) => exit(await actions.doctor({ json: raw.json === true })));

  program
    .command('cleanup')
    .description('remove what a killed proctap left behind (cgroups, netns, veth, nft tables named after its pid)')
    .action(async () => exit(await actions.cleanup()));
  return program;
}

/** Parses argv (node, script, ...) and runs the chosen action; resolves to the exit code. Every error is
 *  one line on stderr: a usage error exits 2, proctap's own failure 125 in `run` (1 elsewhere). */
export async function runCli(argv: string[], actions: CliActions, output: CliOutput = processOutput): Promise<number> {
  let code = 0;
  const program = buildProgram(actions, output, (c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    const message = err instanceof Error ? err.message : String(err);
    output.err(`proctap: ${message.split('\n')[0]}\n`);
    if (err instanceof UsageError) return EXIT_USAGE;
    return argv[2] === 'run' ? EXIT_PROCTAP_FAILED : 1;
  }
}
