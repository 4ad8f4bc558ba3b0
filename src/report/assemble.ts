// SPDX-License-Identifier: MIT
// Report assembly: the one place a Report is made. A pure function of everything the trace gathered —
// the model at its end, the kernel's last counters, what the capture wrote, and the facts of the mode
// (namespace and NAT for run --isolate; targets, earlier connections and namespaces for attach) — so
// the renderers (table, JSON, charts, metrics) all start from the same object.
import type { DnsNameTable } from '../model/names';
import type { CaptureSummary, Report } from '../schema/report';
import { annotateNamespaces, childrenLeftOutNotes, markPreexisting, type AttachFacts } from './attach';
import { l7Section, type L7Inputs } from './l7';
import { isolationReport, mapNat, type IsolationFacts } from './isolation';
import { nameRemotes } from './names';
import { foldedSections } from './folds';
import { coreReport, type CoreInputs } from './sections';
import { statisticsSections } from './statistics';

export interface ReportInputs extends CoreInputs {
  capture?: CaptureSummary;
  /** Names learned from DNS answers; undefined when --no-dns-names. */
  names?: DnsNameTable;
  /** --flow-interval (the kernel's sample resolution) and --interval (time-series buckets, if set). */
  statistics: { flowIntervalMs: number; seriesIntervalMs?: number };
  isolation?: IsolationFacts;
  attach?: AttachFacts;
  /** --l7: the decoded exchanges' summary and what was not decoded. */
  l7?: L7Inputs;
}

export function assembleReport(input: ReportInputs): Report {
  const report = coreReport(input);
  if (input.capture) report.capture = input.capture;
  if (input.names) {
    const dns = nameRemotes(input.names, report, input.originNs);
    if (dns) report.dns = dns;
  }
  if (input.summary) Object.assign(report, foldedSections(input.summary, input.originNs));
  Object.assign(report, statisticsSections(input.flows, report.connections, input, input.statistics.flowIntervalMs, input.statistics.seriesIntervalMs, input.summary));
  if (input.l7) report.l7 = l7Section(input.l7, input.lost);
  if (input.isolation) {
    report.isolation = isolationReport(input.isolation.isolation);
    report.notes.push(...mapNat(report.connections, input.isolation));
  }
  if (input.attach) {
    report.targets = input.attach.targets;
    report.attached = input.attach.attached;
    report.notes.push(...childrenLeftOutNotes(input.attach.childrenLeftOut));
    // after the statistics, as ever: connections without traffic in the trace make no pattern
    report.connections.push(...markPreexisting(report.connections, input.attach.preexisting));
    annotateNamespaces(report.processes, input.attach.namespaces);
  }
  return report;
}
