// SPDX-License-Identifier: MIT
// Gated launch: the command is started by build/proctap-launch, which joins the cgroup, drops
// privileges and waits until release() before it execs. No shell is involved: argv arrays only.
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import type { Writable } from 'node:stream';

export interface LaunchOptions {
  launcher: string;
  cgroupDir: string;
  argv: string[];
  /** run --isolate: enter this network namespace (/run/netns/NAME) before exec. */
  netnsPath?: string;
  /** With netnsPath: bind this file over /etc/resolv.conf in a private mount namespace. */
  resolvConf?: string | null;
  /** Run the command as this user; null keeps the current credentials. */
  credentials: { uid: number; gid: number } | null;
  env?: NodeJS.ProcessEnv;
  /** Send the command's stdout to our stderr (when our stdout carries a capture stream). */
  stdoutToStderr?: boolean;
}

export interface CommandExit {
  /** Exit code, or 128+N when killed by signal N. */
  exitCode: number;
  signal: NodeJS.Signals | null;
}

export interface LaunchedCommand {
  pid: number;
  /** Let the command exec: call once every hook is attached. */
  release(): void;
  /** Make the launcher exit without running the command. */
  abort(): void;
  exited: Promise<CommandExit>;
}

const SAVED = 'PROCTAP_SAVED_';

/** The traced command's environment: proctap's own, with the NODE_* and OPENSSL_* variables that
 *  bin/proctap set aside (so that the privileged node process ignores them) back under their names. */
export function commandEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) if (!key.startsWith(SAVED)) out[key] = value;
  for (const [key, value] of Object.entries(env)) {
    const name = key.slice(SAVED.length);
    if (key.startsWith(SAVED) && /^(NODE|OPENSSL)_[A-Za-z0-9_]+$/.test(name)) out[name] = value;
  }
  return out;
}

export function launchGated(options: LaunchOptions): LaunchedCommand {
  const args = ['--cgroup', options.cgroupDir, '--gate-fd', '3'];
  if (options.netnsPath) args.push('--netns', options.netnsPath);
  if (options.netnsPath && options.resolvConf) args.push('--resolv-conf', options.resolvConf);
  if (options.credentials) args.push('--uid', String(options.credentials.uid), '--gid', String(options.credentials.gid));
  args.push('--', ...options.argv);
  const child = spawn(options.launcher, args, {
    stdio: ['inherit', options.stdoutToStderr ? 2 : 'inherit', 'inherit', 'pipe'],
    env: options.env ?? commandEnvironment(process.env),
  });
  const gate = child.stdio[3] as Writable;
  gate.on('error', () => {
    /* the launcher died before release: reported through exited */
  });
  const exited = new Promise<CommandExit>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      const signum = signal ? os.constants.signals[signal] : 0;
      resolve({ exitCode: signal ? 128 + signum : (code ?? 0), signal });
    });
  });
  if (child.pid === undefined) throw new Error(`cannot start ${options.launcher}`);
  return {
    pid: child.pid,
    release: () => gate.end(Buffer.from([1])),
    abort: () => gate.destroy(),
    exited,
  };
}

export interface Reaper {
  /** proctap's own teardown is done: let the reaper go without doing anything. */
  release(): void;
}

/**
 * Starts the reaper for a cgroup: if proctap dies before removing the cgroup (SIGKILL, a crash), the
 * reaper kills every process in it and removes it. It notices through EOF on a pipe only proctap holds.
 */
export function startReaper(launcher: string, cgroupDir: string): Reaper {
  const child = spawn(launcher, ['--reap', cgroupDir, '--watch-fd', '3'], {
    stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
    detached: true,
  });
  const pipe = child.stdio[3] as Writable & { unref?: () => void };
  pipe.on('error', () => {});
  child.unref();
  pipe.unref?.();
  return { release: () => pipe.destroy() };
}
