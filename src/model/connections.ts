// SPDX-License-Identifier: MIT
// TCP connection lifecycle from inet_sock_set_state records, keyed by socket cookie.
import * as L from '../native/layout.generated';
import type { Outcome } from '../schema/report';
import { errnoName } from '../util/net';

export const TCP_STATE = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
  NEW_SYN_RECV: 12,
} as const;

const ECONNREFUSED = 111;
const ECONNRESET = 104;
const ETIMEDOUT = 110;
const EPIPE = 32;

export interface TcpConnection {
  cookie: bigint;
  pid: number;
  /** The owner's kernel start time (0n unknown): pid + start time identify it. */
  startTime: bigint;
  role: 'active' | 'passive' | 'listen';
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  startNs: number;
  /** startNs is the connection's start (its SYN_SENT or SYN_RECV was seen). false: proctap learned of the
   *  socket later (opened before an attach, or its first records were lost), startNs is its first record. */
  startSeen: boolean;
  establishedNs: number | null;
  endNs: number | null;
  outcome: Outcome;
  error: string | null;
}

export interface SockStateEvent {
  tgid: number;
  startTime?: bigint;
  tsNs: number;
  cookie: bigint;
  oldState: number;
  newState: number;
  error: number;
  /** SOCK_META_* of the socket (bpf/proctap.h): how the kernel learned of it. */
  flags?: number;
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
}

/** How a connection ended, from the state it left and the socket error at that moment. */
export function closeOutcome(oldState: number, error: number, wasEstablished: boolean): { outcome: Outcome; error: string | null } {
  const name = error ? errnoName(error) : null;
  if (!wasEstablished && (oldState === TCP_STATE.SYN_SENT || oldState === TCP_STATE.SYN_RECV)) {
    if (error === ECONNREFUSED) return { outcome: 'refused', error: name };
    if (error === ETIMEDOUT) return { outcome: 'timeout', error: name };
    if (error) return { outcome: 'failed', error: name };
    return { outcome: 'aborted', error: null };
  }
  if (error === ECONNRESET || error === EPIPE) return { outcome: 'reset', error: name };
  if (error === ETIMEDOUT) return { outcome: 'timeout', error: name };
  return { outcome: 'closed', error: name };
}

/** The role of a socket first seen in mid-life: what the kernel knew of it, else whether its local port is
 *  one that traced processes listen on (an accepted socket shares its listener's port; a connect()ed
 *  one gets another). */
function roleInMidLife(flags: number, localPort: number, listening: ReadonlySet<number>): 'active' | 'passive' {
  if (flags & L.SOCK_META_PASSIVE) return 'passive';
  if (flags & L.SOCK_META_ACTIVE) return 'active';
  return listening.has(localPort) ? 'passive' : 'active';
}

export class ConnectionTracker {
  private readonly connections = new Map<bigint, TcpConnection>();
  /** Local ports traced processes listen on: their LISTEN records, and attach's listeners from /proc. */
  private readonly listening = new Set<number>();
  /** Connections first seen in mid-life without a role from the kernel: decided at list(). */
  private readonly undecided = new Set<TcpConnection>();

  list(): TcpConnection[] {
    for (const c of this.undecided) c.role = roleInMidLife(0, c.localPort, this.listening);
    this.undecided.clear();
    return [...this.connections.values()].filter((c) => c.role !== 'listen');
  }

  /** A listening socket a traced process held before the trace (attach). */
  noteListener(localPort: number): void {
    this.listening.add(localPort);
  }

  get(cookie: bigint): TcpConnection | undefined {
    return this.connections.get(cookie);
  }

  /** A retired socket's lifecycle leaves the table (the model keeps it with its flows, or folds it). */
  delete(cookie: bigint): TcpConnection | undefined {
    const c = this.connections.get(cookie);
    this.connections.delete(cookie);
    return c;
  }

  onState(e: SockStateEvent): void {
    let c = this.connections.get(e.cookie);
    if (!c) {
      const startSeen = e.newState === TCP_STATE.SYN_SENT || e.newState === TCP_STATE.SYN_RECV;
      const flags = e.flags ?? 0;
      const role =
        e.newState === TCP_STATE.LISTEN ? 'listen'
        : e.newState === TCP_STATE.SYN_RECV ? 'passive'
        : e.newState === TCP_STATE.SYN_SENT ? 'active'
        : roleInMidLife(flags, e.localPort, this.listening);
      c = {
        cookie: e.cookie,
        pid: e.tgid,
        startTime: e.startTime ?? 0n,
        role,
        localAddr: e.localAddr,
        localPort: e.localPort,
        remoteAddr: e.remoteAddr,
        remotePort: e.remotePort,
        startNs: e.tsNs,
        startSeen,
        establishedNs: null,
        endNs: null,
        outcome: 'open',
        error: null,
      };
      this.connections.set(e.cookie, c);
      if (role === 'listen') this.listening.add(e.localPort);
      else if (!startSeen && !(flags & (L.SOCK_META_ACTIVE | L.SOCK_META_PASSIVE))) this.undecided.add(c);
    }
    if (e.localPort) {
      c.localAddr = e.localAddr;
      c.localPort = e.localPort;
    }
    if (e.remotePort) {
      c.remoteAddr = e.remoteAddr;
      c.remotePort = e.remotePort;
    }
    if (e.newState === TCP_STATE.ESTABLISHED && c.establishedNs === null) c.establishedNs = e.tsNs;
    if (e.newState === TCP_STATE.CLOSE && c.endNs === null) {
      c.endNs = e.tsNs;
      const end = closeOutcome(e.oldState, e.error, c.establishedNs !== null);
      c.outcome = end.outcome;
      c.error = end.error;
    }
  }
}
