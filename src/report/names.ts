// SPDX-License-Identifier: MIT
// The report's remote names: `remoteName` beside endpoint and connection addresses, and the `dns`
// section, from the names the traced processes learned from their DNS answers. Pure.
import type { DnsNameTable } from '../model/names';
import type { ConnectionReport, DnsReport, EndpointReport } from '../schema/report';

/** Names endpoints and connections in place (rows the assembly is building) and returns the `dns`
 *  section, or undefined when no response was seen. */
export function nameRemotes(table: DnsNameTable, rows: { endpoints: EndpointReport[]; connections: ConnectionReport[] }, originNs: number): DnsReport | undefined {
  const atNs = (offsetMs: number) => originNs + offsetMs * 1e6;
  for (const e of rows.endpoints) {
    const name = table.nameOf(e.remoteAddr);
    if (name !== undefined) e.remoteName = name;
  }
  for (const c of rows.connections) {
    const name = table.nameOf(c.remoteAddr, atNs(c.startOffsetMs));
    if (name !== undefined) c.remoteName = name;
  }
  if (table.responses === 0 && table.malformed === 0) return undefined;
  return {
    responses: table.responses,
    malformed: table.malformed,
    cut: table.cut,
    names: table
      .list()
      .sort((a, b) => a.firstNs - b.firstNs || a.name.localeCompare(b.name))
      .map((n) => ({
        name: n.name,
        cnames: n.cnames,
        addresses: n.addresses,
        pids: [...n.pids].sort((a, b) => a - b),
        servers: n.servers,
        firstOffsetMs: Math.round((n.firstNs - originNs) / 1000) / 1000,
        ttl: n.ttl,
      })),
  };
}
