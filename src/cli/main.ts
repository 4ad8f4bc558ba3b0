// SPDX-License-Identifier: MIT
// The command line's actions: what run, attach, report, doctor and cleanup do once program.ts has parsed
// and checked their arguments. Importable: nothing runs at import time; bin/proctap.js calls main().
import * as fs from 'node:fs';
import type { Report } from '../schema/report';
import { renderReport } from '../render/table';
import { OutputFileError, createOutputFile, sudoOwner } from '../util/output';
import { renderCharts } from '../render/charts';
import { errnoText, openEventStream, type EventStream } from '../render/events';
import type { TraceRecord } from '../kernel/records';
import { captureKind, compileCaptureFilter, type CaptureKind, type CaptureRequest } from '../trace/capture';
import type { FinishProgress, SessionOptions } from '../trace/session';
import { cgroup2Mount, removeStaleCgroups } from '../proc/cgroup';
import { runTraced } from '../trace/run';
import { AttachError, attachTraced } from '../trace/attach';
import { renderDoctor, runDoctor } from './doctor';
import { checkPrivileges, readPasswd, resolveCredentials } from './privileges';
import { CAPTURE_RING_BUFFER_BYTES, RING_BUFFER_BYTES, UsageError, VERSION, runCli, type AttachTargets, type CliActions, type IsolateCliOptions, type TraceCliOptions } from './program';
import { removeStaleIsolation } from '../isolate/system';
import { removeStaleKeyLogs } from '../tls/keylog';
import { ContainerTracker } from '../trace/containers';
import { ContainerLookupError } from '../proc/containers';
import { planRotation, startMetrics, type Metrics, type Rotation } from './fleet';
import { installFatalHandlers } from '../util/teardown';
import { PROCTAP_DATA_SNAPLEN } from '../native/layout.generated';

export { EXIT_PROCTAP_FAILED, EXIT_USAGE, UsageError, VERSION } from './program';

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
  /** The capture's kind, and --pcap-filter compiled once for its link type, here: a bad one is refused
   *  before anything starts. */
  capture: { kind: CaptureKind; filter: CaptureRequest['filter'] };
  /** Removes the files created for this run: called when it fails before writing them. */
  discard(): void;
  /** -C / -G / -W: the capture file is the first of several. */
  rotation: Rotation | null;
}

type SharedSessionOptions = Omit<SessionOptions, 'followChildren' | 'countUnownedPackets' | 'match' | 'tracedNow'>;

function sessionOptions(opts: TraceCliOptions, events: EventStream | null, outputs: Outputs, containers: ContainerTracker, metrics: Metrics | null): SharedSessionOptions {
  return {
    containers,
    onStarted: metrics?.onStarted,
    backend: opts.backend,
    intervalMs: opts.flowInterval,
    seriesIntervalMs: opts.interval,
    ringBufferBytes: opts.ringBuffer ?? (opts.pcap ? CAPTURE_RING_BUFFER_BYTES : RING_BUFFER_BYTES),
    version: VERSION,
    detailCalls: opts.detail === true,
    onRecord: events ? (record: TraceRecord) => events.write(record) : undefined,
    onBatchEnd: events ? () => events.flush() : undefined,
    log: (line: string) => process.stderr.write(`${line}\n`),
    dnsNames: opts.dnsNames !== false,
    retransmits: opts.retransmits !== false,
    // The plaintext has two readers, the L7 view and the event stream: without them its uprobes would only
    // cost (a trap per SSL_read/SSL_write: nginx over HTTPS kept 0.36 of its rate, bench step 8).
    tlsPlaintext: opts.tlsPlaintext !== false && (opts.l7 === true || opts.events !== undefined),
    keepConnections: opts.keepConnections,
    keepProcesses: opts.keepProcesses,
    testHooks: opts.testHook,
    // the L7 series of --metrics are counted only when there is an exporter to read them
    l7: opts.l7 ? { snaplen: opts.l7Snaplen ?? PROCTAP_DATA_SNAPLEN, metrics: metrics !== null } : undefined,
    onExchange: events && opts.l7 ? (e) => events.writeExchange(e) : undefined,
    display: opts.quiet && !opts.live ? undefined : { live: opts.live === true, intervalMs: opts.live ? (opts.interval ?? 1000) : 1000 },
    capture: opts.pcap
      ? {
          kind: outputs.capture.kind,
          path: opts.pcap,
          fd: typeof outputs.pcap === 'number' ? outputs.pcap : undefined,
          format: opts.pcapFormat,
          snaplen: opts.snaplen,
          filter: outputs.capture.filter,
          rotation: outputs.rotation?.capture,
        }
      : undefined,
  };
}

/** A filter that does not compile, files that cannot be created: refused before anything starts
 *  (contradicting options were refused by program.ts already). */
function prepareOutputs(opts: TraceCliOptions, mode: Parameters<typeof captureKind>[0]): Outputs {
  const { kind, linkType } = captureKind(mode);
  let filter: CaptureRequest['filter'] = null;
  if (opts.pcapFilter !== undefined) {
    try {
      filter = compileCaptureFilter(opts.pcapFilter, opts.snaplen, linkType);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const rotation = planRotation(opts, { force: opts.force === true, owner: sudoOwner(process.env) }, (line) => process.stderr.write(`${line}\n`));
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
  return { json: open(opts.json), events: open(opts.events), pcap: open(rotation ? rotation.firstFile : opts.pcap), capture: { kind, filter }, discard, rotation };
}

/** The JSON report where asked, and the terminal report on stderr (the command's stdout stays its own).
 *  An output that failed during the trace (`failure`), or the JSON report failing now, is thrown at the
 *  end as one OutputWriteError, once every other output had its chance. */
async function emitReport(report: Report, opts: TraceCliOptions, outputs: Outputs, events: EventStream | null, failure: Error | null, progress?: FinishProgress): Promise<void> {
  const failures = failure ? [failure.message] : [];
  progress?.step('writing the outputs');
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
  progress?.done();
  if (!opts.quiet && opts.json !== '-' && opts.events !== '-') {
    process.stderr.write(`${renderReport(report, { color: opts.color && process.stderr.isTTY === true, allProcesses: opts.allProcesses === true })}\n`);
  }
  if (failures.length) throw new OutputWriteError(failures.join('; '));
}

function openEvents(opts: TraceCliOptions, outputs: Outputs, containers: ContainerTracker): EventStream | null {
  if (outputs.events === null) return null;
  const startNs = Number(process.hrtime.bigint());
  const extra = (record: TraceRecord) => containers.eventFields(record);
  return outputs.events === '-' ? openEventStream(1, () => startNs, undefined, extra) : openEventStream(outputs.events, () => startNs, opts.events, extra);
}

/** Closes the event stream of a trace that failed anyway: its own error would only hide that one. */
function closeQuietly(events: EventStream | null): void {
  try {
    events?.close();
  } catch {
    /* reported: the trace's own failure */
  }
}

/** The actions on the real system: privileges checked, files created, BPF loaded. */
export const systemActions: CliActions = {
  async run(command: string[], opts: TraceCliOptions, user: string | undefined, isolate?: IsolateCliOptions): Promise<number> {
    checkPrivileges();
    const credentials = resolveCredentials(user, process.env, readPasswd());
    const metrics = await startMetrics(opts, 'run', VERSION, (line) => process.stderr.write(`${line}\n`));
    try {
      const outputs = prepareOutputs(opts, { isolate: isolate !== undefined });
      const containers = new ContainerTracker();
      const events = openEvents(opts, outputs, containers);
      let result;
      try {
        result = await runTraced({ argv: command, credentials, isolate, tlsKeyLog: opts.tlsKeylog !== false, ...sessionOptions(opts, events, outputs, containers, metrics) });
      } catch (err) {
        closeQuietly(events);
        outputs.discard();
        throw err;
      }
      outputs.rotation?.annotate(result.report);
      await emitReport(result.report, opts, outputs, events, result.outputError, result.progress);
      return result.exitCode;
    } finally {
      await metrics?.close();
    }
  },

  async attach(targets: AttachTargets, opts: TraceCliOptions): Promise<number> {
    checkPrivileges();
    const metrics = await startMetrics(opts, 'attach', VERSION, (line) => process.stderr.write(`${line}\n`));
    try {
      const outputs = prepareOutputs(opts, { netnsCapture: targets.netnsCapture });
      const containers = new ContainerTracker();
      const events = openEvents(opts, outputs, containers);
      let result;
      try {
        result = await attachTraced({ ...targets, ...sessionOptions(opts, events, outputs, containers, metrics) });
      } catch (err) {
        closeQuietly(events);
        outputs.discard();
        if (err instanceof AttachError || err instanceof ContainerLookupError) throw new UsageError(err.message);
        throw err;
      }
      outputs.rotation?.annotate(result.report);
      await emitReport(result.report, opts, outputs, events, result.outputError, result.progress);
      return 0;
    } finally {
      await metrics?.close();
    }
  },

  async report(file: string, opts: { chart?: string; color: boolean; allProcesses?: boolean }): Promise<number> {
    let report: Report;
    try {
      report = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new UsageError(`cannot read report ${file}: ${(err as Error).message.split('\n')[0]}`);
    }
    if (report?.schemaVersion !== 1) throw new UsageError(`${file} is not a proctap report (schemaVersion 1)`);
    process.stdout.write(`${renderReport(report, { color: opts.color && process.stdout.isTTY === true, allProcesses: opts.allProcesses === true })}\n`);
    if (opts.chart) process.stderr.write(`proctap: charts: ${(await renderCharts(report, opts.chart)).join(', ')}\n`);
    return 0;
  },

  async doctor(opts: { json: boolean }): Promise<number> {
    checkPrivileges();
    const result = await runDoctor();
    process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : `${renderDoctor(result)}\n`);
    return result.selectedBackend ? 0 : 1;
  },

  async cleanup(): Promise<number> {
    checkPrivileges();
    const removed = [...(await removeStaleCgroups(cgroup2Mount())), ...removeStaleIsolation(), ...removeStaleKeyLogs()];
    process.stdout.write(removed.length ? `removed ${removed.join(', ')}\n` : 'nothing to clean up\n');
    return 0;
  },
};

/** Runs the CLI; resolves to the process exit code. */
export function main(argv: string[]): Promise<number> {
  installFatalHandlers();
  return runCli(argv, systemActions);
}
