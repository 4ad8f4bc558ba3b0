// SPDX-License-Identifier: MIT
// Output files of a root tool: never through a symlink, never over an existing file unless --force,
// mode 0644, and owned by the user who ran sudo.
import * as fs from 'node:fs';

export class OutputFileError extends Error {}

export interface OutputFileOptions {
  force: boolean;
  /** Owner to give the file (SUDO_UID/SUDO_GID), or null to leave it to root. */
  owner: { uid: number; gid: number } | null;
}

/** The user who ran sudo, to own what proctap writes. */
export function sudoOwner(env: NodeJS.ProcessEnv): { uid: number; gid: number } | null {
  if (!env.SUDO_UID || !/^\d+$/.test(env.SUDO_UID)) return null;
  const gid = env.SUDO_GID && /^\d+$/.test(env.SUDO_GID) ? Number(env.SUDO_GID) : Number(env.SUDO_UID);
  return { uid: Number(env.SUDO_UID), gid };
}

/** Opens `path` for writing: O_NOFOLLOW|O_CREAT, O_EXCL unless force (then O_TRUNC), 0644, fchown'ed. */
export function createOutputFile(path: string, options: OutputFileOptions): number {
  const { O_WRONLY, O_CREAT, O_EXCL, O_TRUNC, O_NOFOLLOW } = fs.constants;
  let fd: number;
  // O_EXCL alone would call a symlink "exists": say what it is. O_NOFOLLOW still guards the race.
  const existing = fs.lstatSync(path, { throwIfNoEntry: false });
  if (existing?.isSymbolicLink()) throw new OutputFileError(`${path} is a symbolic link: refusing to write through it`);
  // A pipe or a device (/dev/null, a FIFO a reader waits on) is written as it is: nothing to replace.
  if (existing?.isFIFO() || existing?.isCharacterDevice()) return fs.openSync(path, O_WRONLY | O_NOFOLLOW);
  try {
    fd = fs.openSync(path, O_WRONLY | O_CREAT | O_NOFOLLOW | (options.force ? O_TRUNC : O_EXCL), 0o644);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new OutputFileError(`${path} exists (use --force to overwrite it)`);
    if (code === 'ELOOP') throw new OutputFileError(`${path} is a symbolic link: refusing to write through it`);
    throw new OutputFileError(`cannot create ${path}: ${(err as Error).message.replace(/^[A-Z]+: /, '').split(',')[0]}`);
  }
  try {
    if (!fs.fstatSync(fd).isFile()) throw new OutputFileError(`${path} is not a regular file`);
    fs.fchmodSync(fd, 0o644);
    if (options.owner) fs.fchownSync(fd, options.owner.uid, options.owner.gid);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}
