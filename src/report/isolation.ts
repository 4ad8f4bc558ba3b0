// SPDX-License-Identifier: MIT
// run --isolate in the report: the namespace's addresses and NAT, and per connection the source it had
// on the host after masquerade, from a conntrack dump read before the namespace was torn down. Pure.
import type { ConntrackEntry } from '../native';
import { mapConnections } from '../isolate/natmap';
import type { Isolation } from '../isolate/system';
import type { ConnectionReport, IsolationReport } from '../schema/report';

/** What the report says of the namespace mode: the isolation and the host's conntrack table (or why it
 *  could not be read), gathered by the run before its teardown. */
export interface IsolationFacts {
  isolation: Pick<Isolation, 'names' | 'v4' | 'v6' | 'device' | 'nat' | 'forwarding' | 'dns'>;
  conntrack: ConntrackEntry[] | { error: string };
}

export function isolationReport(iso: IsolationFacts['isolation']): IsolationReport {
  return {
    netns: iso.names.netns,
    hostInterface: iso.names.hostIf,
    namespaceInterface: iso.names.nsIf,
    subnet: iso.v4.cidr,
    gateway: iso.v4.hostAddr,
    address: iso.v4.nsAddr,
    ...(iso.v6 ? { ipv6: { subnet: iso.v6.cidr, gateway: iso.v6.hostAddr, address: iso.v6.nsAddr } } : {}),
    device: iso.device,
    nat: iso.nat,
    ipForward: iso.forwarding,
    dns: iso.dns,
  };
}

/**
 * Sets `nat` on the namespace's connections (in place: rows the assembly is building) to the source
 * address and port each had on the host after masquerade; returns the notes to add.
 */
export function mapNat(connections: ConnectionReport[], facts: IsolationFacts): string[] {
  const iso = facts.isolation;
  const own = new Set([iso.v4.nsAddr, ...(iso.v6 ? [iso.v6.nsAddr] : [])]);
  const rows = connections.filter((c) => own.has(c.localAddr) && c.localPort > 0 && c.remoteAddr !== '*');
  if (rows.length === 0 || iso.device === null) return [];
  if (!Array.isArray(facts.conntrack)) return [`NAT mapping not shown: conntrack could not be read (${facts.conntrack.error}).`];
  const mapped = mapConnections(
    facts.conntrack,
    rows.map((c) => ({ protocol: c.proto, src: c.localAddr, srcPort: c.localPort, dst: c.remoteAddr, dstPort: c.remotePort })),
  );
  let missing = 0;
  rows.forEach((c, i) => {
    const m = mapped[i];
    if (m === undefined) missing++;
    else if (m.sourceTranslated) c.nat = { addr: m.translatedSrc, port: m.translatedSrcPort };
  });
  return missing > 0 ? [`NAT mapping: conntrack had no entry for ${missing} connection${missing === 1 ? '' : 's'} (expired before the end of the run).`] : [];
}
