// SPDX-License-Identifier: MIT
// Rotating captures as tcpdump makes them (-C SIZE, -G SECONDS, -W COUNT with -w FILE), around the
// packet writers: every file is a complete capture of its own (section header and interface blocks
// first), so each one opens alone in tshark.
//
// tcpdump's rules, followed here:
// - a file's name is FILE, run through strftime(3) in local time when -G is given, then followed by a
//   number when -C is given and it is not the first file: FILE, FILE1, FILE2, ...; with -W N the
//   number is always there and zero-padded to the digits of N-1 (FILE0 .. FILE9 for -W 10), and -C
//   wraps around to FILE0 after N files (a ring). -G starts a new time-named file, numbered from 0 again.
// - before each packet: first -G (a new file once G seconds have passed since the current one was
//   started, checked when a packet arrives), then -C (a new file once the current one is larger than
//   SIZE bytes: a file can pass SIZE by one packet).
// - -G with -W and no -C: after N files the capture is over. tcpdump exits there; proctap stops
//   writing packets and goes on tracing (the report says how many packets were written).
// - a name that comes round again (the ring, or a -G pattern without a time field) is overwritten.
import strftime from 'strftime';
import { createOutputFile, type OutputFileOptions } from '../util/output';
import { fdSink, type ByteSink, type CapturedPacket, type PacketWriter, type PcapngWriter } from './writer';

export interface RotationPlan {
  /** -o FILE as given: a strftime(3) pattern with -G. */
  pattern: string;
  /** -C, in bytes. */
  fileSize?: number;
  /** -G, in seconds. */
  seconds?: number;
  /** -W. */
  count?: number;
  /** When the capture started (ms since the epoch): the first -G period and the first name. */
  startedAtMs: number;
}

/** tcpdump's width of the file number for -W N: the digits of N-1 (0 for N = 1). */
export function rotationDigits(count: number | undefined): number {
  let digits = 0;
  for (let n = (count ?? 0) - 1; n > 0; n = Math.floor(n / 10)) digits++;
  return digits;
}

/** A file name as tcpdump's MakeFilename makes it. */
export function rotatedFileName(plan: Pick<RotationPlan, 'pattern' | 'seconds'>, count: number, digits: number, periodStartSec: number): string {
  const base = plan.seconds ? strftime(plan.pattern, new Date(periodStartSec * 1000)) : plan.pattern;
  return count === 0 && digits === 0 ? base : `${base}${String(count).padStart(digits, '0')}`;
}

/** The first file: what the caller creates up front (like every other output). */
export function firstRotatedFileName(plan: RotationPlan): string {
  return rotatedFileName(plan, 0, plan.fileSize ? rotationDigits(plan.count) : 0, Math.floor(plan.startedAtMs / 1000));
}

export interface RotationFiles {
  /** The first file, created by the caller. */
  first: ByteSink;
  /** How the next ones are created (--force, the sudo caller as owner). */
  output: OutputFileOptions;
}

export interface RotationHooks {
  /** A new file was started, its header written: the hook for what every file must carry before its
   *  packets. TLS: write the decryption secrets (a DSB) its packets may need here. */
  onFileStart?(writer: PacketWriter, name: string): void;
  /** -G with -W: the last file is closed, nothing more is written. */
  onLimit?(files: string[]): void;
  now?: () => number;
}

export interface RotatingWriter extends PacketWriter, Pick<PcapngWriter, 'writeInterfaceStatistics' | 'writeNameResolution' | 'writeDecryptionSecrets'> {
  /** The files written, in the order they were last written to (a ring's names once each). */
  files(): string[];
  /** Packets not written because the -G -W limit was reached. */
  readonly discarded: number;
}

/** Files are created with createOutputFile: never through a symbolic link, mode 0644, owned by the sudo
 *  caller; one that exists needs --force, unless this capture made it (the ring). */
export function createRotatingWriter(plan: RotationPlan, files: RotationFiles, makeWriter: (sink: ByteSink) => PacketWriter, hooks: RotationHooks = {}): RotatingWriter {
  const now = hooks.now ?? Date.now;
  const digits = rotationDigits(plan.count);
  let periodStart = Math.floor(plan.startedAtMs / 1000);
  let sizeCount = 0;
  let timeCount = 0;
  const first = firstRotatedFileName(plan);
  const made = new Set<string>([first]);
  const order: string[] = [first];
  let current: PacketWriter | null = makeWriter(files.first);
  hooks.onFileStart?.(current, first);
  let discarded = 0;

  const switchTo = (next: string) => {
    current?.close();
    current = null;
    const again = made.has(next);
    const fd = createOutputFile(next, { ...files.output, force: files.output.force || again });
    current = makeWriter(fdSink(fd, { label: next, closeFd: true }));
    made.add(next);
    const at = order.indexOf(next);
    if (at >= 0) order.splice(at, 1);
    order.push(next);
    hooks.onFileStart?.(current, next);
  };

  /** Before a packet: a new file if -G or -C says so; false when the capture is over (-G -W). */
  const rotate = (): boolean => {
    if (plan.seconds) {
      const t = Math.floor(now() / 1000);
      if (t - periodStart >= plan.seconds) {
        periodStart = t;
        timeCount++;
        if (!plan.fileSize && plan.count && timeCount >= plan.count) {
          current?.close();
          current = null;
          hooks.onLimit?.([...order]);
          return false;
        }
        sizeCount = 0;
        switchTo(rotatedFileName(plan, 0, plan.fileSize ? digits : 0, periodStart));
      }
    }
    if (plan.fileSize && current && (current.bytes?.() ?? 0) > plan.fileSize) {
      sizeCount++;
      if (plan.count && sizeCount >= plan.count) sizeCount = 0;
      switchTo(rotatedFileName(plan, sizeCount, digits, periodStart));
    }
    return current !== null;
  };

  return {
    writePacket(p: CapturedPacket) {
      if (current === null || !rotate()) {
        discarded++;
        return false;
      }
      return current.writePacket(p);
    },
    bytes: () => current?.bytes?.() ?? 0,
    flush: () => current?.flush(),
    close: () => {
      current?.close();
      current = null;
    },
    writeInterfaceStatistics: (s) => (current as Partial<PcapngWriter> | null)?.writeInterfaceStatistics?.(s),
    writeNameResolution: (entries) => (current as Partial<PcapngWriter> | null)?.writeNameResolution?.(entries),
    writeDecryptionSecrets: (type, data) => (current as Partial<PcapngWriter> | null)?.writeDecryptionSecrets?.(type, data),
    files: () => [...order],
    get discarded() {
      return discarded;
    },
  };
}

/**
 * TLS secrets in rotated captures: each file must carry every secret its packets may need, and a
 * connection can outlive a file. So the secrets taken so far are kept and written again, as one
 * Decryption Secrets Block, at the start of every later file (before its first packet).
 */
export function secretsAcrossFiles(
  source: { take(): Buffer | null },
  hooks: RotationHooks | undefined,
  secretsType: number,
): { source: { take(): Buffer | null }; hooks: RotationHooks } {
  const taken: Buffer[] = [];
  return {
    source: {
      take() {
        const lines = source.take();
        if (lines && lines.length > 0) taken.push(lines);
        return lines;
      },
    },
    hooks: {
      ...hooks,
      onFileStart(writer, name) {
        hooks?.onFileStart?.(writer, name);
        const w = writer as Partial<PcapngWriter>;
        if (taken.length > 0 && w.writeDecryptionSecrets) w.writeDecryptionSecrets(secretsType, Buffer.concat(taken));
      },
    },
  };
}
