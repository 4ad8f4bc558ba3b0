// SPDX-License-Identifier: MIT
// The key log channel of `run -o`: a FIFO the launched command (and every descendant) is told about
// through SSLKEYLOGFILE, read by proctap while the trace runs. Secrets never touch a disk: a FIFO has no
// data blocks, what is written waits in the kernel's pipe buffer until proctap reads it, and proctap
// writes it only into the capture the user asked for.
//
//   /run/proctap/keylog-<proctap pid>-<random>/   0700, owned by the command's user
//   └── sslkeylog                                 FIFO, 0600, owned by the command's user
//
// proctap holds the read end from before the command starts until the whole traced tree has exited, so a
// writer's open() never blocks and its writes never fail. Opened by a path, it reaches children that
// close inherited descriptors, and programs that open it in append mode ("a", O_APPEND: meaningless for a
// FIFO, and harmless). Removed at the end; after a SIGKILL by `proctap cleanup` or the next run (the
// directory carries the owner's pid; an empty FIFO is all that remains).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadNative } from '../native';
import { isAlive } from '../proc/procfs';
import { KeyLogLines } from './keylog-lines';

export const KEYLOG_BASE = '/run/proctap';
export const KEYLOG_PREFIX = 'keylog-';
export const KEYLOG_FIFO = 'sslkeylog';

/** A key log channel is a capture's source of secrets (pcap/capture.ts SecretsSource). */
export interface KeyLogChannel {
  /** Complete key log lines that arrived since the last call, or null. */
  take(): Buffer | null;
  /** The FIFO's path: SSLKEYLOGFILE. */
  readonly path: string;
  readonly lines: KeyLogLines;
  /** Closes the read end and removes the FIFO and its directory. Idempotent. */
  close(): void;
}

/** The owner pid in a channel directory's name. */
export function keyLogOwner(name: string): number | null {
  const m = new RegExp(`^${KEYLOG_PREFIX}(\\d+)-[0-9a-f]+$`).exec(name);
  return m ? Number(m[1]) : null;
}

export function createKeyLogChannel(owner: { uid: number; gid: number } | null, base = KEYLOG_BASE): KeyLogChannel {
  // removed again by whoever leaves it empty (run --isolate keeps its own state there too)
  const dir = path.join(base, `${KEYLOG_PREFIX}${process.pid}-${crypto.randomBytes(8).toString('hex')}`);
  for (let attempt = 0; ; attempt++) {
    fs.mkdirSync(base, { recursive: true, mode: 0o755 });
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
      break;
    } catch (err) {
      // another instance removed the emptied base in between: make it again
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 2) throw err;
    }
  }
  const fifo = path.join(dir, KEYLOG_FIFO);
  let fd = -1;
  try {
    loadNative().makeFifo(fifo, 0o600);
    fs.chmodSync(fifo, 0o600);
    fs.chmodSync(dir, 0o700);
    // opened before the user owns the directory (nothing of theirs can be there yet); O_NONBLOCK: a read
    // with nothing written is EAGAIN (or 0 without writers), never a wait
    fd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
    if (owner) {
      fs.chownSync(fifo, owner.uid, owner.gid);
      fs.chownSync(dir, owner.uid, owner.gid);
    }
  } catch (err) {
    if (fd >= 0) fs.closeSync(fd);
    removeChannelDir(dir);
    removeIfEmpty(base);
    throw err;
  }
  const lines = new KeyLogLines();
  const chunk = Buffer.alloc(65536);
  let closed = false;
  const take = (): Buffer | null => {
    if (closed) return null;
    let out = '';
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(fd, chunk, 0, chunk.length, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
        throw err;
      }
      if (n === 0) break; // no writer has it open right now
      out += lines.push(chunk.subarray(0, n));
    }
    return out ? Buffer.from(out, 'latin1') : null;
  };
  return {
    path: fifo,
    lines,
    take,
    close() {
      if (closed) return;
      closed = true;
      fs.closeSync(fd);
      removeChannelDir(dir);
      removeIfEmpty(base);
    },
  };
}

/**
 * Removes a channel directory without following anything its owner may have put there: the entries are
 * unlinked one by one (unlink removes a symbolic link, never its target), then the directory.
 */
function removeChannelDir(dir: string): void {
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    try {
      fs.unlinkSync(path.join(dir, name));
    } catch {
      /* a directory the user made: left, and so is ours */
    }
  }
  try {
    fs.rmdirSync(dir);
  } catch {
    /* not empty: see above */
  }
}

function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    /* in use (ENOTEMPTY) or gone */
  }
}

/** Removes the channels of proctap instances that no longer run. */
export function removeStaleKeyLogs(base = KEYLOG_BASE): string[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(base);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const owner = keyLogOwner(name);
    if (owner === null || owner === process.pid || isAlive(owner)) continue;
    const dir = path.join(base, name);
    removeChannelDir(dir);
    if (!fs.existsSync(dir)) removed.push(dir);
  }
  if (removed.length > 0) removeIfEmpty(base);
  return removed;
}
