// SPDX-License-Identifier: MIT
// Which files are TLS libraries proctap hooks, with which probes, and which are TLS libraries it cannot
// hook (for the report's note). Pure: facts about a file in, a decision out.
import * as L from '../native/layout.generated';

/** One hooked function: entry and return programs with `fn` (TLS_FN_*) as their cookie, or the free hook. */
export interface Probe {
  symbol: string;
  /** File offset of the function (planHooks fills it in from the file's symbols). */
  offset?: number;
  fn: number;
  /** The session is gone (SSL_free, gnutls_deinit): only an entry probe, of the free program. */
  free?: boolean;
}

export interface HookPlan {
  /** "OpenSSL", "GnuTLS". */
  library: string;
  probes: Probe[];
}

const OPENSSL: Probe[] = [
  { symbol: 'SSL_write', fn: 0 },
  { symbol: 'SSL_write_ex', fn: L.TLS_FN_EX },
  { symbol: 'SSL_read', fn: L.TLS_FN_READ },
  { symbol: 'SSL_read_ex', fn: L.TLS_FN_READ | L.TLS_FN_EX },
  { symbol: 'SSL_do_handshake', fn: L.TLS_FN_HANDSHAKE },
  { symbol: 'SSL_free', fn: 0, free: true },
];

const GNUTLS: Probe[] = [
  { symbol: 'gnutls_record_send', fn: L.TLS_FN_SSIZE },
  { symbol: 'gnutls_record_recv', fn: L.TLS_FN_READ | L.TLS_FN_SSIZE },
  { symbol: 'gnutls_handshake', fn: L.TLS_FN_HANDSHAKE },
  { symbol: 'gnutls_deinit', fn: 0, free: true },
];

/** Node.js exports the N-API for addons: an executable defining it and SSL_write is Node with its own OpenSSL. */
const NODE_MARKER = 'napi_module_register';

/** Every symbol whose presence decides something: what inspectElf() is asked to look for. */
export const WANTED_SYMBOLS: ReadonlySet<string> = new Set([...OPENSSL, ...GNUTLS].map((p) => p.symbol).concat(NODE_MARKER));

export interface FileFacts {
  /** File name (basename). */
  name: string;
  /** Wanted symbols defined in it (.dynsym; .symtab for executables), with their file offsets. */
  defined: ReadonlyMap<string, number>;
}

/**
 * The probes for a file, or null when it has no TLS functions proctap hooks. A library must define both
 * the write and the read function; the other functions are hooked where they exist (SSL_read_ex and
 * SSL_write_ex since OpenSSL 1.1.1). Node.js drives its OpenSSL through memory BIOs and writes the socket
 * after SSL_write returns, so its sessions are tied to the thread's next socket write (TLS_FN_DEFERRED).
 */
export function planHooks(file: FileFacts): HookPlan | null {
  const has = (s: string) => file.defined.has(s);
  if (has('SSL_write') && has('SSL_read')) {
    const deferred = has(NODE_MARKER) ? L.TLS_FN_DEFERRED : 0;
    return {
      library: deferred ? 'OpenSSL (built into Node.js)' : 'OpenSSL',
      probes: OPENSSL.filter((p) => has(p.symbol)).map((p) => ({ ...p, fn: p.free ? p.fn : p.fn | deferred, offset: file.defined.get(p.symbol) })),
    };
  }
  if (has('gnutls_record_send') && has('gnutls_record_recv')) {
    return { library: 'GnuTLS', probes: GNUTLS.filter((p) => has(p.symbol)).map((p) => ({ ...p, offset: file.defined.get(p.symbol) })) };
  }
  return null;
}

export interface Unhookable {
  library: string;
  reason: string;
}

/** TLS libraries recognised by file name that planHooks() does not hook. */
const KNOWN_LIBRARIES: Array<{ name: RegExp; library: string; reason: string }> = [
  { name: /^lib(nss3|ssl3|nspr4)\.so/, library: 'NSS', reason: 'NSS is not hooked (its TLS layer has no exported read/write functions)' },
  { name: /^libwolfssl\.so/, library: 'wolfSSL', reason: 'wolfSSL is not hooked' },
  { name: /^libmbedtls\.so/, library: 'Mbed TLS', reason: 'Mbed TLS is not hooked' },
  { name: /^lib(boringssl|boring)\.so/, library: 'BoringSSL', reason: 'this BoringSSL exports no SSL_read/SSL_write' },
  { name: /^libssl\.so/, library: 'OpenSSL', reason: 'it defines no SSL_read/SSL_write' },
  { name: /^libgnutls\.so/, library: 'GnuTLS', reason: 'it defines no gnutls_record_recv/gnutls_record_send' },
];

/**
 * Markers of TLS code inside an executable without hookable symbols: searched for in the named section
 * (Go keeps function names in .gopclntab even when stripped; the C libraries' version texts are in .rodata).
 */
export const EXECUTABLE_MARKERS: ReadonlyArray<{ section: string; marker: string; library: string; reason: string }> = [
  { section: '.gopclntab', marker: 'crypto/tls.(*Conn).Write', library: 'Go crypto/tls', reason: "Go's crypto/tls is not hooked" },
  { section: '.rodata', marker: 'BoringSSL', library: 'BoringSSL (static)', reason: 'linked in without SSL_read/SSL_write symbols' },
  { section: '.rodata', marker: 'LibreSSL ', library: 'LibreSSL (static)', reason: 'linked in without SSL_read/SSL_write symbols' },
  // OpenSSL's error records name their source file: libssl's core is there whenever libssl is linked in
  { section: '.rodata', marker: 'ssl/ssl_lib.c', library: 'OpenSSL (static)', reason: 'linked in without SSL_read/SSL_write symbols' },
  { section: '.rodata', marker: '/rustls-', library: 'rustls', reason: 'rustls is not hooked' },
];

/** A TLS library known by name that is not hooked (planHooks() returned null for it). */
export function unhookableLibrary(name: string): Unhookable | null {
  const known = KNOWN_LIBRARIES.find((k) => k.name.test(name));
  return known ? { library: known.library, reason: known.reason } : null;
}

/** The first TLS marker found in an executable (the list's order: most specific first). */
export function unhookableExecutable(found: ReadonlySet<string>): Unhookable | null {
  const hit = EXECUTABLE_MARKERS.find((m) => found.has(m.marker));
  return hit ? { library: hit.library, reason: hit.reason } : null;
}
