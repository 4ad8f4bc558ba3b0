// SPDX-License-Identifier: MIT
// The command line. Importable from tests: nothing runs at import time; bin/proctap calls main().
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option, type OptionValues } from 'commander';
import type { Backend, Report } from '../report/schema';
import { renderReport } from '../report/table';
import { OutputFileError, createOutputFile, sudoOwner } from '../util/output';
import { renderCharts } from '../report/charts';
import { errnoText, openEventStream, type EventStream } from '../report/events';
import type { TraceRecord } from '../trace/records';
import { MAX_SNAPLEN, type CaptureFormat } from '../pcap/capture';
import { compileCaptureFilter, type CaptureOptions, type EngineOptions } from '../trace/engine';
import { cgroup2Mount, removeStaleCgroups } from '../proc/cgroup';
import { runTraced } from '../trace/session';
import { AttachError, attachTraced } from '../trace/attach';
import { renderDoctor, runDoctor } from './doctor';
import { checkPrivileges, readPasswd, resolveCredentials } from './privileges';

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

export function parseMilliseconds(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (!m || Number(m[1]) <= 0) throw new InvalidArgumentError(`not a duration: '${text}' (e.g. 100ms, 1s)`);
  return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
}

/** An output that could not be written (disk full, ...): proctap's failure, reported in one line. */
export class OutputWriteError extends Error {}

/** Writes the whole report or nothing: a partial JSON file (disk full) is removed, not left unreadable. */
function writeJson(report: Report, target: OutputTarget, file: string): void {
  const text = `${JSON.stringify(report, null, 2)}\n`;
  if (target === '-') {
    process.stdout.write(text);
    return;
  }
  try {
    const bytes = Buffer.from(text);
    for (let at = 0; at < bytes.length; ) at += fs.writeSync(target, bytes, at, bytes.length - at);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const regular = fs.fstatSync(target).isFile();
    fs.closeSync(target);
    if (regular) fs.rmSync(file, { force: true });
    throw new OutputWriteError(`cannot write the JSON report to ${file}: ${errnoText(err)}${code ? ` (${code})` : ''}${regular ? '; the partial file was removed' : ''}`);
  }
  fs.closeSync(target);
}

/** An output: "-" for stdout, or a file descriptor opened (and created) up front. */
type OutputTarget = '-' | number;

interface Outputs {
  json: OutputTarget | null;
  events: OutputTarget | null;
  pcap: OutputTarget | null;
  /** --pcap-filter, compiled once, here: a bad one is refused before anything starts. */
  filter: CaptureOptions['filter'];
  /** Removes the files created for this run: called when it fails before writing them. */
  discard(): void;
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
    .option('--ring-buffer <size>', 'kernel ring buffer size (power of two)', parseRingBufferSize, 8 * 1024 * 1024)
    .option('-o, --pcap <file>', 'capture the traced processes\' packets to FILE ("-" for stdout)')
    .addOption(new Option('--pcap-format <format>', 'capture file format').choices(['pcapng', 'pcap']).default('pcapng'))
    .option('-f, --pcap-filter <expr>', 'tcpdump filter for the capture, e.g. "tcp port 443"')
    .option('--snaplen <bytes>', 'bytes kept per packet (default: whole packet, up to 262144)', parseSnaplen, MAX_SNAPLEN)
    .option('--force', 'overwrite existing output files (never through a symbolic link)')
    .option('-q, --quiet', 'no terminal report')
    .option('--no-color', 'no colors in the terminal report');
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
  ringBuffer: number;
  pcap?: string;
  pcapFormat: CaptureFormat;
  pcapFilter?: string;
  snaplen: number;
  force?: boolean;
  quiet?: boolean;
  color: boolean;
}

/** Commander's untyped option values as TraceCliOptions; a value of the wrong type is a bug here, not bad input. */
export function traceCliOptions(raw: OptionValues): TraceCliOptions {
  const is = (key: string, type: 'string' | 'number' | 'boolean', required = false) => {
    const v = raw[key];
    if ((v !== undefined || required) && typeof v !== type) throw new TypeError(`option ${key}: expected a ${type}, got ${typeof v}`);
  };
  for (const k of ['json', 'chart', 'events', 'pcap', 'pcapFilter']) is(k, 'string');
  for (const k of ['detail', 'live', 'force', 'quiet']) is(k, 'boolean');
  is('interval', 'number');
  for (const k of ['flowInterval', 'ringBuffer', 'snaplen']) is(k, 'number', true);
  for (const k of ['backend', 'pcapFormat']) is(k, 'string', true);
  is('color', 'boolean', true);
  return raw as TraceCliOptions;
}

type SharedEngineOptions = Omit<EngineOptions, 'followChildren' | 'countUnownedPackets' | 'match'>;

function engineOptions(opts: TraceCliOptions, events: EventStream | null, outputs: Outputs): SharedEngineOptions {
  return {
    backend: opts.backend,
    intervalMs: opts.flowInterval,
    seriesIntervalMs: opts.interval,
    ringBufferBytes: opts.ringBuffer,
    version: VERSION,
    detailCalls: opts.detail === true,
    onRecord: events ? (record: TraceRecord) => events.write(record) : undefined,
    log: (line: string) => process.stderr.write(`${line}\n`),
    display: opts.quiet && !opts.live ? undefined : { live: opts.live === true, intervalMs: opts.live ? (opts.interval ?? 1000) : 1000 },
    capture: opts.pcap
      ? {
          path: opts.pcap,
          fd: typeof outputs.pcap === 'number' ? outputs.pcap : undefined,
          format: opts.pcapFormat,
          snaplen: opts.snaplen,
          filter: outputs.filter,
        }
      : undefined,
  };
}

/** Output options that contradict each other, a filter that does not compile, files that cannot be
 *  created: all refused before anything starts. */
function prepareOutputs(opts: TraceCliOptions): Outputs {
  const stdout = [opts.json, opts.pcap, opts.events].filter((t) => t === '-');
  if (stdout.length > 1) throw new UsageError('only one of --json, --pcap and --events can use standard output');
  if (opts.detail && !opts.events) throw new UsageError('--detail needs --events FILE');
  if (opts.pcapFilter !== undefined && !opts.pcap) throw new UsageError('--pcap-filter needs --pcap FILE');
  let filter: Outputs['filter'] = null;
  if (opts.pcapFilter !== undefined) {
    try {
      filter = compileCaptureFilter(opts.pcapFilter, opts.snaplen);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const created: Array<{ path: string; fd: number }> = [];
  const open = (target: string | undefined): OutputTarget | null => {
    if (target === undefined) return null;
    if (target === '-') return '-';
    try {
      const fd = createOutputFile(target, { force: opts.force === true, owner: sudoOwner(process.env) });
      created.push({ path: target, fd });
      return fd;
    } catch (err) {
      discard();
      throw err instanceof OutputFileError ? new UsageError(err.message) : err;
    }
  };
  const discard = () => {
    for (const { path: file, fd } of created.splice(0)) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already closed by its writer */
      }
      fs.rmSync(file, { force: true });
    }
  };
  return { json: open(opts.json), events: open(opts.events), pcap: open(opts.pcap), filter, discard };
}

/** The JSON report where asked, and the terminal report on stderr (the command's stdout stays its own).
 *  An output that failed during the trace (`failure`), or the JSON report failing now, is thrown at the
 *  end as one OutputWriteError, once every other output had its chance. */
async function emitReport(report: Report, opts: TraceCliOptions, outputs: Outputs, events: EventStream | null, failure: Error | null): Promise<void> {
  const failures = failure ? [failure.message] : [];
  try {
    events?.close();
  } catch (err) {
    if (!failures.includes((err as Error).message)) failures.push((err as Error).message);
  }
  if (outputs.json !== null) {
    try {
      writeJson(report, outputs.json, opts.json ?? '-');
    } catch (err) {
      failures.push((err as Error).message);
    }
  }
  if (opts.chart) {
    const files = await renderCharts(report, opts.chart);
    process.stderr.write(`proctap: charts: ${files.join(', ')}\n`);
  }
  if (!opts.quiet && opts.json !== '-' && opts.events !== '-') {
    process.stderr.write(`${renderReport(report, { color: opts.color && process.stderr.isTTY === true })}\n`);
  }
  if (failures.length) throw new OutputWriteError(failures.join('; '));
}

function openEvents(opts: TraceCliOptions, outputs: Outputs): EventStream | null {
  if (outputs.events === null) return null;
  const startNs = Number(process.hrtime.bigint());
  return outputs.events === '-' ? openEventStream(1, () => startNs) : openEventStream(outputs.events, () => startNs, opts.events);
}

/** Closes the event stream of a trace that failed anyway: its own error would only hide that one. */
function closeQuietly(events: EventStream | null): void {
  try {
    events?.close();
  } catch {
    /* reported: the trace's own failure */
  }
}

export function buildProgram(io: { exit: (code: number) => void }): Command {
  const program = new Command('proctap')
    .description('eBPF per-process network tracer: what a process tree talks to, how much, in what pattern')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const run = program
    .command('run')
    .description('trace a launched command and every descendant; exits with the command\'s exit code')
    .usage('[options] -- COMMAND [ARGS...]')
    .argument('<command...>', 'command and arguments (put -- before it)')
    .option('-u, --user <name|uid>', 'run the command as this user (default: the sudo caller; "root" to keep root)');
  addTraceOptions(run)
    .action(async (argv: string[], raw: OptionValues) => {
      const opts = traceCliOptions(raw);
      checkPrivileges();
      const credentials = resolveCredentials(raw.user, process.env, readPasswd());
      const outputs = prepareOutputs(opts);
      const events = openEvents(opts, outputs);
      let result;
      try {
        result = await runTraced({ argv, credentials, ...engineOptions(opts, events, outputs) });
      } catch (err) {
        closeQuietly(events);
        outputs.discard();
        throw err;
      }
      await emitReport(result.report, opts, outputs, events, result.outputError);
      io.exit(result.exitCode);
    });

  const attach = program
    .command('attach')
    .description('trace running processes and their future children, until they exit, Ctrl-C or --duration')
    .usage('[options] PID... | --comm NAME | --cgroup PATH')
    .argument('[pids...]', 'processes to trace')
    .option('--comm <name>', 'every process whose comm is NAME, now and later')
    .option('--cgroup <path>', 'every process in this cgroup v2 (path below the cgroup2 mount), now and later')
    .option('--duration <time>', 'stop after this long (e.g. 30s, 2m)', parseDuration)
    .option('--no-children', 'do not follow children forked after the attach');
  addTraceOptions(attach)
    .action(async (pidArgs: string[], raw: OptionValues) => {
      const opts = traceCliOptions(raw);
      const pids = pidArgs.map((p) => {
        try {
          return parsePid(p);
        } catch (err) {
          throw new UsageError((err as Error).message);
        }
      });
      if (pids.length === 0 && raw.comm === undefined && raw.cgroup === undefined) {
        throw new UsageError('attach needs PIDs, --comm NAME or --cgroup PATH');
      }
      checkPrivileges();
      const outputs = prepareOutputs(opts);
      const events = openEvents(opts, outputs);
      let result;
      try {
        result = await attachTraced({
          pids,
          comm: raw.comm as string | undefined,
          cgroup: raw.cgroup as string | undefined,
          durationMs: raw.duration as number | undefined,
          followChildren: raw.children !== false,
          ...engineOptions(opts, events, outputs),
        });
      } catch (err) {
        closeQuietly(events);
        outputs.discard();
        if (err instanceof AttachError) throw new UsageError(err.message);
        throw err;
      }
      await emitReport(result.report, opts, outputs, events, result.outputError);
      io.exit(0);
    });

  program
    .command('report')
    .description('re-render a saved JSON report')
    .argument('<file>', 'report written by --json')
    .option('--chart <dir>', 'also write the PNG charts to DIR')
    .option('--no-color', 'no colors')
    .action(async (file: string, opts) => {
      let report: Report;
      try {
        report = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch (err) {
        throw new UsageError(`cannot read report ${file}: ${(err as Error).message.split('\n')[0]}`);
      }
      if (report?.schemaVersion !== 1) throw new UsageError(`${file} is not a proctap report (schemaVersion 1)`);
      process.stdout.write(`${renderReport(report, { color: opts.color && process.stdout.isTTY === true })}\n`);
      if (opts.chart) process.stderr.write(`proctap: charts: ${(await renderCharts(report, opts.chart)).join(', ')}\n`);
      io.exit(0);
    });

  program
    .command('doctor')
    .description('what this kernel allows: hooks, backends, cgroup v2, BTF, proc connector')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      checkPrivileges();
      const result = await runDoctor();
      process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : `${renderDoctor(result)}\n`);
      io.exit(result.selectedBackend ? 0 : 1);
    });

  program
    .command('cleanup')
    .description('remove what a killed proctap left behind (cgroups named proctap-<pid>-*)')
    .action(async () => {
      checkPrivileges();
      const removed = await removeStaleCgroups(cgroup2Mount());
      process.stdout.write(removed.length ? `removed ${removed.join(', ')}\n` : 'nothing to clean up\n');
      io.exit(0);
    });
  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram({ exit: (c) => (code = c) });
  const subcommand = argv[2];
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    process.stderr.write(`proctap: ${(err as Error).message.split('\n')[0]}\n`);
    if (err instanceof UsageError) return EXIT_USAGE;
    return subcommand === 'run' ? EXIT_PROCTAP_FAILED : 1;
  }
}
