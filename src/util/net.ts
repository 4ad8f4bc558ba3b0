// SPDX-License-Identifier: MIT
// Address helpers shared by the decoders and the reports.

export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/** Text form of a raw address (network byte order, IPv4 in the first 4 bytes). IPv4-mapped IPv6
 *  addresses are shown as IPv4; an all-zero address is "*" (unknown or unbound). */
export function formatAddress(family: number, raw: Uint8Array): string {
  if (family === AF_INET) {
    if (raw[0] === 0 && raw[1] === 0 && raw[2] === 0 && raw[3] === 0) return '*';
    return `${raw[0]}.${raw[1]}.${raw[2]}.${raw[3]}`;
  }
  if (raw.every((b) => b === 0)) return '*';
  const mapped = raw.subarray(0, 10).every((b) => b === 0) && raw[10] === 0xff && raw[11] === 0xff;
  if (mapped) return `${raw[12]}.${raw[13]}.${raw[14]}.${raw[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((raw[i] << 8) | raw[i + 1]);
  return compressIPv6(groups);
}

/** RFC 5952: lower case, longest run (>= 2) of zero groups becomes "::". */
function compressIPv6(groups: number[]): string {
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLength).join(':');
  return `${head}::${tail}`;
}

export function protoName(proto: number): 'tcp' | 'udp' {
  return proto === IPPROTO_TCP ? 'tcp' : 'udp';
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 4: 'EINTR', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES', 22: 'EINVAL',
  32: 'EPIPE', 101: 'ENETUNREACH', 103: 'ECONNABORTED', 104: 'ECONNRESET', 110: 'ETIMEDOUT',
  111: 'ECONNREFUSED', 113: 'EHOSTUNREACH',
};

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}
