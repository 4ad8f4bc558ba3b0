// SPDX-License-Identifier: MIT
// Remote names: what the traced processes learned from the DNS answers they received (report/names.ts
// makes the report's remoteName fields and `dns` section from it). Pure: packets in, names out. No
// lookups of our own.
import { DnsFormatError, parseDnsMessage, resolutions, udpDatagram } from '../l7/dns-message';

export interface LearnedName {
  name: string;
  cnames: string[];
  addresses: string[];
  pids: number[];
  /** DNS servers (address:port as sent from) that answered it. */
  servers: string[];
  firstNs: number;
  ttl: number;
}

/** Every name learned, and per address the names that resolved to it, in the order they were learned. */
export class DnsNameTable {
  private readonly byName = new Map<string, LearnedName>();
  private readonly byAddress = new Map<string, Array<{ name: string; tsNs: number }>>();
  responses = 0;
  malformed = 0;
  /** Responses whose capture was cut (longer than PROCTAP_DNS_SNAPLEN): later answers missing. */
  cut = 0;

  /** A DNS response packet (IP header on) received by `pid` at `tsNs`. */
  onResponse(packet: Uint8Array, pid: number, tsNs: number): void {
    const datagram = udpDatagram(packet);
    if (!datagram) {
      this.malformed++;
      return;
    }
    let message;
    try {
      message = parseDnsMessage(datagram.payload);
    } catch (err) {
      if (!(err instanceof DnsFormatError)) throw err;
      this.malformed++;
      return;
    }
    this.responses++;
    if (datagram.cut || message.incomplete) this.cut++;
    if (!message.response || message.rcode !== 0) return;
    const server = datagram.family === 10 ? `[${datagram.sourceAddr}]:${datagram.sourcePort}` : `${datagram.sourceAddr}:${datagram.sourcePort}`;
    for (const r of resolutions(message)) {
      let learned = this.byName.get(r.name);
      if (!learned) {
        learned = { name: r.name, cnames: r.cnames, addresses: [], pids: [], servers: [], firstNs: tsNs, ttl: r.ttl };
        this.byName.set(r.name, learned);
      }
      if (r.cnames.length > learned.cnames.length) learned.cnames = r.cnames;
      learned.ttl = Math.min(learned.ttl, r.ttl);
      if (!learned.pids.includes(pid)) learned.pids.push(pid);
      if (!learned.servers.includes(server)) learned.servers.push(server);
      for (const address of r.addresses) {
        if (!learned.addresses.includes(address)) learned.addresses.push(address);
        const names = this.byAddress.get(address) ?? [];
        names.push({ name: r.name, tsNs });
        this.byAddress.set(address, names);
      }
    }
  }

  /** The name an address had at `atNs`: the last answer learned by then, else the first one learned after. */
  nameOf(address: string, atNs = Infinity): string | undefined {
    const names = this.byAddress.get(address);
    if (!names) return undefined;
    let best = names[0].name;
    for (const n of names) if (n.tsNs <= atNs) best = n.name;
    return best;
  }

  list(): LearnedName[] {
    return [...this.byName.values()];
  }
}
