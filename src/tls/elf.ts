// SPDX-License-Identifier: MIT
// Just enough of ELF to tell whether a mapped file carries a TLS library: its defined function symbols
// (.dynsym, optionally .symtab), its section names, and whether a section contains a marker string.
// Written by hand because the npm ELF parsers (elfy, elf-tools, elfinfo) take the whole file as one
// Buffer: 100 MB for a Node.js executable, read again for every process. Here only the section headers
// and the few sections asked for are read, at their offsets. 64-bit little-endian ELF only (x86-64,
// arm64): anything else is reported as not an ELF file we read.
import * as fs from 'node:fs';

const SHT_SYMTAB = 2;
const SHT_DYNSYM = 11;
const STT_FUNC = 2;
const STT_GNU_IFUNC = 10;
const STB_GLOBAL = 1;
const STB_WEAK = 2;
const SYM_SIZE = 24;
const SECTION_HEADER_SIZE = 64;
/** Tables larger than this are not read (no real symbol or string table comes near). */
const MAX_TABLE_BYTES = 256 * 1024 * 1024;

export interface ElfSection {
  name: string;
  type: number;
  /** Virtual address when loaded (sh_addr). */
  addr: number;
  offset: number;
  size: number;
  link: number;
}

export interface ElfFile {
  /** ET_EXEC (2) or ET_DYN (3): a position-independent executable is ET_DYN too. */
  type: number;
  sections: ElfSection[];
}

export interface ElfFacts {
  type: number;
  sectionNames: Set<string>;
  /** The wanted names that are defined functions (global or weak) in .dynsym (or .symtab if asked), with
   *  the file offset of their first instruction (what a uprobe is attached at). */
  defined: Map<string, number>;
}

function readAt(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return done === length ? buf : buf.subarray(0, done);
}

function u64(buf: Buffer, at: number): number {
  return Number(buf.readBigUInt64LE(at));
}

/** Section headers and names, or null when the file is not a 64-bit little-endian ELF file. */
export function readElfSections(fd: number): ElfFile | null {
  const size = fs.fstatSync(fd).size;
  const header = readAt(fd, 0, 64);
  if (header.length < 64 || header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2 || header[5] !== 1) return null;
  const type = header.readUInt16LE(16);
  const shoff = u64(header, 40);
  let shnum = header.readUInt16LE(60);
  let shstrndx = header.readUInt16LE(62);
  if (header.readUInt16LE(58) !== SECTION_HEADER_SIZE || shoff === 0) return { type, sections: [] };
  const first = readAt(fd, shoff, SECTION_HEADER_SIZE);
  if (first.length < SECTION_HEADER_SIZE) return { type, sections: [] };
  // extended numbering: the real counts live in section 0
  if (shnum === 0) shnum = u64(first, 32);
  if (shstrndx === 0xffff) shstrndx = first.readUInt32LE(40);
  if (shnum > 65536 || shoff + shnum * SECTION_HEADER_SIZE > size) return { type, sections: [] };
  const table = readAt(fd, shoff, shnum * SECTION_HEADER_SIZE);
  const raw = [];
  for (let i = 0; i < shnum; i++) {
    const at = i * SECTION_HEADER_SIZE;
    raw.push({ nameAt: table.readUInt32LE(at), type: table.readUInt32LE(at + 4), addr: u64(table, at + 16), offset: u64(table, at + 24), size: u64(table, at + 32), link: table.readUInt32LE(at + 40) });
  }
  const names = raw[shstrndx];
  const strings = names && names.offset + names.size <= size && names.size < MAX_TABLE_BYTES ? readAt(fd, names.offset, names.size) : Buffer.alloc(0);
  const sections = raw.map((s) => {
    const end = strings.indexOf(0, s.nameAt);
    const name = s.nameAt < strings.length ? strings.toString('latin1', s.nameAt, end < 0 ? strings.length : end) : '';
    return { name, type: s.type, addr: s.addr, offset: s.offset, size: s.size, link: s.link };
  });
  return { type, sections };
}

/** Defined function symbols of one symbol table (SHT_DYNSYM or SHT_SYMTAB) that are among `wanted`. */
function definedIn(fd: number, file: ElfFile, symtab: ElfSection, wanted: ReadonlySet<string>, found: Map<string, number>): void {
  const strtab = file.sections[symtab.link];
  if (!strtab || symtab.size > MAX_TABLE_BYTES || strtab.size > MAX_TABLE_BYTES) return;
  const syms = readAt(fd, symtab.offset, symtab.size);
  const strings = readAt(fd, strtab.offset, strtab.size);
  const longest = Math.max(...[...wanted].map((w) => w.length));
  const weak = new Set<string>();
  for (let at = 0; at + SYM_SIZE <= syms.length; at += SYM_SIZE) {
    const info = syms[at + 4];
    const kind = info & 0xf;
    const bind = info >> 4;
    if ((kind !== STT_FUNC && kind !== STT_GNU_IFUNC) || (bind !== STB_GLOBAL && bind !== STB_WEAK)) continue;
    const shndx = syms.readUInt16LE(at + 6);
    const section = file.sections[shndx];
    if (shndx === 0 || !section) continue; // SHN_UNDEF: imported, not defined here (or a special index)
    const nameAt = syms.readUInt32LE(at);
    if (nameAt >= strings.length) continue;
    let end = nameAt;
    while (end < strings.length && strings[end] !== 0 && end - nameAt <= longest) end++;
    if (strings[end] !== 0) continue; // longer than any wanted name
    const name = strings.toString('latin1', nameAt, end);
    if (!wanted.has(name)) continue;
    // the first global definition wins, a weak one stands in until there is one (the dynamic linker's choice)
    if (found.has(name) && !(weak.has(name) && bind === STB_GLOBAL)) continue;
    if (bind === STB_GLOBAL) weak.delete(name);
    else weak.add(name);
    found.set(name, u64(syms, at + 8) - section.addr + section.offset);
  }
}

/** The facts of the ELF file at `path`; null when it is not one we read (or cannot be opened). */
export function inspectElf(path: string, wanted: ReadonlySet<string>, options: { symtab: boolean }): ElfFacts | null {
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch {
    try {
      fd = fs.openSync(path, 'r'); // /proc/PID/map_files/... and /proc/PID/root/... are links by nature
    } catch {
      return null;
    }
  }
  try {
    const file = readElfSections(fd);
    if (!file) return null;
    const defined = new Map<string, number>();
    for (const s of file.sections) if (s.type === SHT_DYNSYM) definedIn(fd, file, s, wanted, defined);
    if (options.symtab && defined.size === 0) for (const s of file.sections) if (s.type === SHT_SYMTAB) definedIn(fd, file, s, wanted, defined);
    return { type: file.type, sectionNames: new Set(file.sections.map((s) => s.name)), defined };
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/** Which of `needles` occur in the named section of the file (read in chunks; at most `maxBytes` of it). */
export function sectionMarkers(path: string, sectionName: string, needles: readonly string[], maxBytes = 512 * 1024 * 1024): Set<string> {
  const found = new Set<string>();
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch {
    return found;
  }
  try {
    const file = readElfSections(fd);
    const section = file?.sections.find((s) => s.name === sectionName);
    if (!section) return found;
    const chunk = 4 * 1024 * 1024;
    const overlap = Math.max(...needles.map((n) => n.length));
    const end = section.offset + Math.min(section.size, maxBytes);
    const patterns = needles.map((n) => Buffer.from(n, 'latin1'));
    for (let at = section.offset; at < end && found.size < needles.length; at += chunk) {
      const buf = readAt(fd, at, Math.min(chunk + overlap, end - at));
      patterns.forEach((p, i) => {
        if (buf.indexOf(p) >= 0) found.add(needles[i]);
      });
    }
    return found;
  } catch {
    return found;
  } finally {
    fs.closeSync(fd);
  }
}
