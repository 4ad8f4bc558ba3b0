// SPDX-License-Identifier: MIT
// /proc/PID/maps, pure: the files a process has mapped executable, each once, named by device and inode
// (what a uprobe attaches to) and by the path the process sees (inside its own mount namespace).

export interface MappedFile {
  /** "major:minor:inode" (decimal): the same file in every process and mount namespace. */
  id: string;
  /** The path as the process sees it (relative to its root), " (deleted)" removed. */
  path: string;
  major: number;
  minor: number;
  inode: number;
  /** The file was unlinked or replaced since it was mapped (an upgraded library). */
  deleted: boolean;
  /** "start-end" of one of its executable mappings: /proc/PID/map_files/<range> opens the very file. */
  range: string;
}

export function fileId(major: number, minor: number, inode: number): string {
  return `${major}:${minor}:${inode}`;
}

/** Major and minor of a st_dev as glibc encodes it (dev_t of fs.Stats.dev). */
export function splitDev(dev: number | bigint): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n));
  const minor = Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n));
  return { major, minor };
}

const LINE = /^([0-9a-f]+-[0-9a-f]+) (\S{4}) [0-9a-f]+ ([0-9a-f]+):([0-9a-f]+) (\d+)\s+(\/.*)$/;

/** Files mapped with execute permission (code: executables and shared libraries), in map order. */
export function executableMappings(maps: string): MappedFile[] {
  const files = new Map<string, MappedFile>();
  for (const line of maps.split('\n')) {
    const m = LINE.exec(line);
    if (!m || m[2][2] !== 'x') continue;
    const inode = Number(m[5]);
    if (inode === 0) continue;
    const major = parseInt(m[3], 16);
    const minor = parseInt(m[4], 16);
    const id = fileId(major, minor, inode);
    if (files.has(id)) continue;
    const deleted = m[6].endsWith(' (deleted)');
    files.set(id, { id, path: deleted ? m[6].slice(0, -' (deleted)'.length) : m[6], major, minor, inode, deleted, range: m[1] });
  }
  return [...files.values()];
}
