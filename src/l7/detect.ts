// SPDX-License-Identifier: MIT
// Classification of a connection from its first bytes, never from port numbers. Each protocol's test
// says yes (with the side that sent the bytes), no, or more (a prefix of a yes so far). From a
// connection's first byte the tests are strict about how a protocol opens (a request line, a
// preface, a ClientHello, a startup message, a command); mid-stream they also accept what the middle
// of a conversation looks like, but only as whole messages filling a call's bytes.
import { looksLikeDns, detectDnsTcp } from './dns';
import { matchRequestLine, matchStatusLine, type Match } from './http1';
import { detectHttp2 } from './http2';
import { detectPostgres } from './postgres';
import { detectRedis } from './redis';
import { detectTls } from './tls';
import type { L7Protocol, Role, Transport } from './types';

export interface Detected {
  match: Match;
  protocol?: L7Protocol;
  /** The side that sent the bytes tested (absent when they do not tell). */
  sender?: Role;
  /** PostgreSQL: the bytes are an untyped startup-phase message. */
  postgresStartup?: boolean;
}

type Test = (b: Uint8Array, cut: boolean, midStream: boolean) => { match: Match; sender?: Role; startup?: boolean };

const http1: Test = (b, cut) => {
  const req = matchRequestLine(b, 0, cut);
  if (req === 'yes') return { match: 'yes', sender: 'client' };
  const res = matchStatusLine(b, 0, cut);
  if (res === 'yes') return { match: 'yes', sender: 'server' };
  return { match: req === 'more' || res === 'more' ? 'more' : 'no' };
};

/** In order: the first yes wins (the tests exclude each other on well-formed input). */
const TCP_TESTS: Array<[L7Protocol, Test]> = [
  ['http2', detectHttp2],
  ['http1', http1],
  ['tls', detectTls],
  ['postgres', detectPostgres],
  ['redis', detectRedis],
  ['dns', detectDnsTcp],
];

export function detect(b: Uint8Array, cut: boolean, midStream: boolean, transport: Transport): Detected {
  if (transport === 'udp') {
    const h = looksLikeDns(b, true);
    return h ? { match: 'yes', protocol: 'dns', sender: h.response ? 'server' : 'client' } : { match: 'no' };
  }
  if (b.length === 0) return { match: cut ? 'no' : 'more' };
  let more = false;
  for (const [protocol, test] of TCP_TESTS) {
    const r = test(b, cut, midStream);
    if (r.match === 'yes') return { match: 'yes', protocol, sender: r.sender, postgresStartup: r.startup };
    if (r.match === 'more') more = true;
  }
  return { match: more ? 'more' : 'no' };
}
