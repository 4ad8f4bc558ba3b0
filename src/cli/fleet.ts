// SPDX-License-Identifier: MIT
// What main.ts does for --metrics and -C/-G/-W: bind the metrics endpoint before anything is loaded,
// hand it the engine once tracing starts; plan the rotation of the capture file and say what it wrote.
import * as fs from 'node:fs';
import type { Report } from '../schema/report';
import { sessionMetricsSource } from '../trace/metrics-source';
import { MetricsListenError, serveMetrics, type MetricsServer } from '../metrics/server';
import { firstRotatedFileName, rotatedFileName, rotationDigits, type RotationPlan } from '../pcap/rotate';
import type { CaptureRotation } from '../pcap/capture';
import type { TraceSession } from '../trace/session';
import type { OutputFileOptions } from '../util/output';
import { UsageError, type TraceCliOptions } from './program';

export interface Metrics {
  /** SessionOptions.onStarted: scrapes read this session from now on. */
  onStarted(session: TraceSession): void;
  close(): Promise<void>;
}

/** --metrics: listening before anything is loaded; an address in use is a usage error (exit 2). */
export async function startMetrics(opts: TraceCliOptions, mode: 'run' | 'attach', version: string, log: (line: string) => void): Promise<Metrics | null> {
  if (!opts.metrics) return null;
  // prom-client and the @opentelemetry/api it loads are 80-odd modules, ~75 ms of every start: only for --metrics
  const { MetricsExporter } = require('../metrics/exporter') as typeof import('../metrics/exporter');
  const exporter = new MetricsExporter({ top: opts.metricsTop });
  let server: MetricsServer;
  try {
    server = await serveMetrics(opts.metrics, exporter);
  } catch (err) {
    throw err instanceof MetricsListenError ? new UsageError(err.message) : err;
  }
  log(`proctap: Prometheus metrics on ${server.url}`);
  return {
    onStarted: (session) => exporter.setSource(sessionMetricsSource(session), { version, mode, backend: session.probes.backend }),
    close: () => server.close(),
  };
}

export interface Rotation {
  /** The first file's name: created up front like every other output. */
  firstFile: string;
  capture: CaptureRotation;
  /** Puts the files written into the report's capture summary. */
  annotate(report: Report): void;
}

/** -C/-G/-W for -o FILE (program.ts refused them without a file). A -W ring's names are known up front:
 *  one that exists is refused now, as the first file would be, unless --force. */
export function planRotation(opts: TraceCliOptions, output: OutputFileOptions, log: (line: string) => void): Rotation | null {
  if (!opts.pcap || (opts.fileSize === undefined && opts.rotateSeconds === undefined)) return null;
  const plan: RotationPlan = { pattern: opts.pcap, fileSize: opts.fileSize, seconds: opts.rotateSeconds, count: opts.fileCount, startedAtMs: Date.now() };
  const firstFile = firstRotatedFileName(plan);
  if (plan.count && plan.fileSize && !plan.seconds && !output.force) {
    for (let i = 1; i < plan.count; i++) {
      const name = rotatedFileName(plan, i, rotationDigits(plan.count), 0);
      if (fs.lstatSync(name, { throwIfNoEntry: false })) throw new UsageError(`${name} exists (use --force to overwrite it)`);
    }
  }
  let files: string[] = [];
  return {
    firstFile,
    capture: {
      plan,
      output,
      hooks: {
        onFileStart: (_writer, name) => (files = [...files.filter((f) => f !== name), name]),
        onLimit: (written) => log(`proctap: -G/-W: ${written.length} files written, the capture is over (tracing goes on)`),
      },
    },
    annotate: (report) => {
      if (report.capture) report.capture.files = files;
    },
  };
}
