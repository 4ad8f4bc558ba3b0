// SPDX-License-Identifier: MIT
// Who runs proctap and as whom the traced command runs. Parsers are pure; readers are at the bottom.
import * as fs from 'node:fs';

export const REQUIRED_CAPABILITIES: Array<[name: string, bit: number]> = [
  ['CAP_BPF', 39],
  ['CAP_PERFMON', 38],
  ['CAP_NET_ADMIN', 12],
  ['CAP_SYS_ADMIN', 21],
];

/** Capabilities from REQUIRED_CAPABILITIES missing in a /proc/PID/status CapEff mask. */
export function missingCapabilities(status: string): string[] {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  const effective = m ? BigInt(`0x${m[1]}`) : 0n;
  return REQUIRED_CAPABILITIES.filter(([, bit]) => (effective & (1n << BigInt(bit))) === 0n).map(([name]) => name);
}

export interface Credentials {
  uid: number;
  gid: number;
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

export function parsePasswd(text: string): PasswdEntry[] {
  return text
    .split('\n')
    .map((line) => line.split(':'))
    .filter((f) => f.length >= 4 && /^\d+$/.test(f[2]) && /^\d+$/.test(f[3]))
    .map((f) => ({ name: f[0], uid: Number(f[2]), gid: Number(f[3]) }));
}

/**
 * The traced command's credentials: --user NAME|UID if given ("root" keeps root), else the user who
 * ran sudo (SUDO_UID/SUDO_GID), else unchanged (null).
 */
export function resolveCredentials(user: string | undefined, env: NodeJS.ProcessEnv, passwd: PasswdEntry[]): Credentials | null {
  if (user !== undefined) {
    const entry = /^\d+$/.test(user) ? passwd.find((p) => p.uid === Number(user)) : passwd.find((p) => p.name === user);
    if (!entry && !/^\d+$/.test(user)) throw new Error(`unknown user '${user}'`);
    const uid = entry?.uid ?? Number(user);
    if (uid === 0) return null;
    return { uid, gid: entry?.gid ?? uid };
  }
  const sudoUid = env.SUDO_UID;
  if (sudoUid && /^\d+$/.test(sudoUid) && Number(sudoUid) !== 0) {
    const gid = env.SUDO_GID && /^\d+$/.test(env.SUDO_GID) ? Number(env.SUDO_GID) : Number(sudoUid);
    return { uid: Number(sudoUid), gid };
  }
  return null;
}

export function checkPrivileges(): void {
  const missing = missingCapabilities(fs.readFileSync('/proc/self/status', 'utf8'));
  if (missing.length > 0) throw new Error(`missing capabilities ${missing.join(', ')}: proctap needs root (run it with sudo)`);
}

export function readPasswd(): PasswdEntry[] {
  try {
    return parsePasswd(fs.readFileSync('/etc/passwd', 'utf8'));
  } catch {
    return [];
  }
}
