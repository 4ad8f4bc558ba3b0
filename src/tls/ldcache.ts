// SPDX-License-Identifier: MIT
// /etc/ld.so.cache (glibc's "glibc-ld.so.cache1.1" format), pure: which file the dynamic loader would map
// for a library name. Used to hook the system's TLS libraries before a launched command (or a process
// that starts later) can load them: the dynamic loader maps them after exec, faster than any scan.
// Written by hand: no npm package reads this format.

const NEW_MAGIC = 'glibc-ld.so.cache1.1';
const OLD_MAGIC = 'ld.so-1.7.0';
const NEW_HEADER = 48;
const NEW_ENTRY = 24;
const OLD_ENTRY = 12;

export interface CachedLibrary {
  /** "libssl.so.3" */
  name: string;
  /** "/lib/x86_64-linux-gnu/libssl.so.3" */
  path: string;
}

function cString(buf: Buffer, at: number): string {
  const end = buf.indexOf(0, at);
  return buf.toString('utf8', at, end < 0 ? buf.length : end);
}

/** Every library the cache names (empty for anything that is not a cache in a format read here). */
export function parseLdCache(buf: Buffer): CachedLibrary[] {
  let base = 0;
  if (buf.toString('latin1', 0, OLD_MAGIC.length) === OLD_MAGIC) {
    // the old format's table, then the new format aligned to 8 (both in one file, glibc < 2.32)
    const n = buf.readUInt32LE(OLD_MAGIC.length + 1);
    base = (OLD_MAGIC.length + 1 + 4 + n * OLD_ENTRY + 7) & ~7;
  }
  if (buf.length < base + NEW_HEADER || buf.toString('latin1', base, base + NEW_MAGIC.length) !== NEW_MAGIC) return [];
  const count = buf.readUInt32LE(base + 20);
  const libraries: CachedLibrary[] = [];
  for (let i = 0; i < count; i++) {
    const at = base + NEW_HEADER + i * NEW_ENTRY;
    if (at + NEW_ENTRY > buf.length) break;
    // string offsets are from the start of the new-format header
    const key = base + buf.readUInt32LE(at + 4);
    const value = base + buf.readUInt32LE(at + 8);
    if (key >= buf.length || value >= buf.length) continue;
    libraries.push({ name: cString(buf, key), path: cString(buf, value) });
  }
  return libraries;
}

/** The TLS libraries proctap hooks, as the cache names them (each path once). */
export function tlsLibrariesInCache(libraries: readonly CachedLibrary[]): string[] {
  const wanted = /^lib(ssl\.so\.(3|1\.1)|gnutls\.so\.30)$/;
  return [...new Set(libraries.filter((l) => wanted.test(l.name) && l.path.startsWith('/')).map((l) => l.path))];
}
