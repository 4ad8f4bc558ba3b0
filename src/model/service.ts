// SPDX-License-Identifier: MIT
// The service side of a connection: a server's clients are grouped by their address and the port they
// connected to (our listening port), a client's servers by the server's address and port. Ephemeral
// ports (a client's source port) never make groups of their own. Pure.

export type Direction = 'outbound' | 'inbound';

export interface ServiceEndpoint {
  proto: 'tcp' | 'udp';
  /** outbound: we connected (or sent) to remoteAddr:port; inbound: remoteAddr connected to our `port`. */
  direction: Direction;
  remoteAddr: string;
  /** The service port: the remote's for outbound, our listening port for inbound. */
  port: number;
}

/** Linux's default net.ipv4.ip_local_port_range, used where the system's is not known. */
export const DEFAULT_EPHEMERAL_RANGE: [number, number] = [32768, 60999];

export interface ServiceInput {
  proto: 'tcp' | 'udp';
  /** TCP: active (connect), passive (accept); anything else (udp, a socket from before the trace) is told
   *  by the ports. */
  role: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
}

const ephemeral = (port: number, range: [number, number]) => port >= range[0] && port <= range[1];

export function serviceEndpoint(c: ServiceInput, range: [number, number] = DEFAULT_EPHEMERAL_RANGE): ServiceEndpoint {
  // The ports decide where they disagree: an "active" row from a client's port to ours is an accepted
  // connection whose handshake was not seen (a server's socket first used after an attach).
  const byPorts = c.localPort !== 0 && c.remotePort !== 0 && ephemeral(c.remotePort, range) && !ephemeral(c.localPort, range);
  const inbound = c.role === 'passive' || byPorts;
  return inbound
    ? { proto: c.proto, direction: 'inbound', remoteAddr: c.remoteAddr, port: c.localPort }
    : { proto: c.proto, direction: 'outbound', remoteAddr: c.remoteAddr, port: c.remotePort };
}

/** "tcp/in/127.0.0.1/80": a map key for a service endpoint. */
export function serviceKey(e: ServiceEndpoint): string {
  return `${e.proto}/${e.direction === 'inbound' ? 'in' : 'out'}/${e.remoteAddr}/${e.port}`;
}
