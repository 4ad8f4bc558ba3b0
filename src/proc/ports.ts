// SPDX-License-Identifier: MIT
// The kernel's range of ports for a client's socket (net.ipv4.ip_local_port_range): a port in it is a
// client's, a port outside it a service's (model/service.ts groups endpoints by the service port).
import * as fs from 'node:fs';

export function ephemeralPortRange(file = '/proc/sys/net/ipv4/ip_local_port_range'): [number, number] | undefined {
  try {
    const [lo, hi] = fs.readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(lo) && Number.isInteger(hi) && lo > 0 && lo <= hi ? [lo, hi] : undefined;
  } catch {
    return undefined;
  }
}
