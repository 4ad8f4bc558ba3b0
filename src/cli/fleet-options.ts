// SPDX-License-Identifier: MIT
// Options for leaving proctap running: --metrics HOST:PORT, --metrics-top N, and tcpdump's capture
// rotation (-C SIZE, -G SECONDS, -W COUNT). Parsers and checks only: pure, no system access.
import { InvalidArgumentError } from 'commander';
import { isIP } from 'node:net';
import type { ListenAddress } from '../metrics/server';

export type { ListenAddress };

/**
 * "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464", or a port alone (loopback, 127.0.0.1). A host must be
 * an IP address: a name could resolve to anything, and binding beyond loopback is a choice to spell out.
 */
export function parseListenAddress(text: string): ListenAddress {
  const t = text.trim();
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(t) ?? /^([^:[\]]*):(\d+)$/.exec(t) ?? /^()(\d+)$/.exec(t);
  if (!m) throw new InvalidArgumentError(`not a listen address: '${text}' (e.g. 127.0.0.1:9464, [::1]:9464, 9464)`);
  const host = m[1] === '' ? '127.0.0.1' : m[1];
  if (!isIP(host)) throw new InvalidArgumentError(`not an IP address: '${host}' in '${text}' (e.g. 127.0.0.1:9464)`);
  const port = Number(m[2]);
  if (!(port >= 1 && port <= 65535)) throw new InvalidArgumentError(`port must be 1..65535, got '${m[2]}'`);
  return { host, port };
}

function positiveInteger(text: string, what: string, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 1 || n > max) throw new InvalidArgumentError(`${what} must be an integer from 1 to ${max}, got '${text}'`);
  return n;
}

/** --metrics-top: remotes and processes with a series of their own (the rest is "other"). */
export function parseMetricsTop(text: string): number {
  return positiveInteger(text, '--metrics-top', 10000);
}

/**
 * -C as tcpdump takes it: a count of millions of bytes (1,000,000, not 1,048,576), or with a suffix
 * k/K, m/M, g/G of KiB, MiB, GiB.
 */
export function parseFileSize(text: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text.trim());
  const unit = m ? { '': 1_000_000, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'] : 0;
  const bytes = m ? Number(m[1]) * unit : 0;
  if (!m || bytes < 1 || bytes > 2 ** 53) throw new InvalidArgumentError(`-C takes a file size in millions of bytes (or with k, m, g), e.g. 100 or 512k; got '${text}'`);
  return bytes;
}

export function parseRotateSeconds(text: string): number {
  return positiveInteger(text, '-G', 100 * 365 * 86400);
}

export function parseFileCount(text: string): number {
  return positiveInteger(text, '-W', 1_000_000);
}

export interface FleetCliOptions {
  pcap?: string;
  metrics?: ListenAddress;
  metricsTop?: number;
  fileSize?: number;
  rotateSeconds?: number;
  fileCount?: number;
}

/** Contradicting or dangling options, refused before anything starts; returns the message or null. */
export function fleetOptionProblem(opts: FleetCliOptions): string | null {
  if (opts.metricsTop !== undefined && !opts.metrics) return '--metrics-top needs --metrics HOST:PORT';
  const rotation = [opts.fileSize !== undefined && '-C', opts.rotateSeconds !== undefined && '-G', opts.fileCount !== undefined && '-W'].filter(Boolean);
  if (rotation.length === 0) return null;
  if (!opts.pcap) return `${rotation.join(', ')} needs -o/--pcap FILE`;
  if (opts.pcap === '-') return `${rotation.join(', ')}: rotating files cannot go to standard output (-o -)`;
  if (opts.fileCount !== undefined && opts.fileSize === undefined && opts.rotateSeconds === undefined) return '-W needs -C SIZE or -G SECONDS';
  return null;
}
