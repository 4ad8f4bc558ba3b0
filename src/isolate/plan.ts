// SPDX-License-Identifier: MIT
// Namespace mode (`run --isolate`), the pure part: what one instance creates and how it is named, which
// private subnet it takes, and the nftables ruleset it loads. Everything an instance creates carries
// the owning proctap pid, so `proctap cleanup` can tell a dead instance's leftovers from anyone else's.

/** Linux IFNAMSIZ - 1. */
export const MAX_IFNAME = 15;

export class InterfaceNameError extends Error {}

/**
 * A device name given by the user (-d): 1-15 characters from a conservative set. The kernel allows
 * more, but nothing a user types for a real device needs spaces, quotes, slashes or semicolons.
 */
export function checkInterfaceName(name: string): string {
  if (name.length === 0 || name.length > MAX_IFNAME || !/^[A-Za-z0-9_.@-]+$/.test(name) || name === '.' || name === '..') {
    throw new InterfaceNameError(
      `invalid interface name '${name}' (1-${MAX_IFNAME} characters: letters, digits, '.', '-', '_', '@')`,
    );
  }
  return name;
}

export interface InstanceNames {
  owner: number;
  /** ip netns name: /run/netns/<netns>. */
  netns: string;
  /** veth end left on the host (the namespace's gateway). */
  hostIf: string;
  /** veth end inside the namespace. */
  nsIf: string;
  /** nftables table (family inet). */
  table: string;
  /** iptables rule comment, when nftables is not usable. */
  comment: string;
}

export function instanceNames(owner: number): InstanceNames {
  return {
    owner,
    netns: `proctap-${owner}`,
    hostIf: `pt${owner}h`,
    nsIf: `pt${owner}n`,
    table: `proctap_${owner}`,
    comment: `proctap-${owner}`,
  };
}

/** Owner pid of a name made by instanceNames(), or null for anything else. */
export function ownerOfNetns(name: string): number | null {
  const m = /^proctap-(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
}
export function ownerOfInterface(name: string): number | null {
  const m = /^pt(\d+)[hn]$/.exec(name);
  return m ? Number(m[1]) : null;
}
export function ownerOfTable(name: string): number | null {
  const m = /^proctap_(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
}
export function ownerOfComment(comment: string): number | null {
  const m = /^proctap-(\d+)$/.exec(comment);
  return m ? Number(m[1]) : null;
}

// ---------------------------------------------------------------- IPv4 subnets

export interface Prefix4 {
  addr: number;
  len: number;
}

export function parseIpv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return null;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** "10.1.2.0/24", "10.1.2.3" (a /32), "default" (0.0.0.0/0) → prefix; null for IPv6 and junk. */
export function parsePrefix4(text: string): Prefix4 | null {
  if (text === 'default') return { addr: 0, len: 0 };
  const [a, l] = text.split('/');
  const addr = parseIpv4(a);
  const len = l === undefined ? 32 : Number(l);
  if (addr === null || !Number.isInteger(len) || len < 0 || len > 32) return null;
  return { addr: addr - (addr % 2 ** (32 - len)), len };
}

export function overlaps(a: Prefix4, b: Prefix4): boolean {
  const len = Math.min(a.len, b.len);
  const size = 2 ** (32 - len);
  return Math.floor(a.addr / size) === Math.floor(b.addr / size);
}

/** The pool the /30s come from: 10.242.0.0/16 (16384 subnets). */
export const SUBNET_POOL: Prefix4 = { addr: parseIpv4('10.242.0.0') as number, len: 16 };

export interface Subnet4 {
  /** e.g. "10.242.0.4/30" */
  cidr: string;
  /** Host end of the veth: the namespace's default gateway. */
  hostAddr: string;
  /** Namespace end. */
  nsAddr: string;
  prefixLen: 30;
}

/**
 * The first /30 of the pool that overlaps no existing route or address (default routes aside). `seed`
 * spreads concurrent instances over the pool; a taken subnet is seen by the next instance because the
 * host end's address is added before the allocation lock is released.
 */
export function chooseSubnet(inUse: Prefix4[], seed = 0): Subnet4 {
  const count = 2 ** (32 - SUBNET_POOL.len) / 4;
  const relevant = inUse.filter((p) => p.len > 0 && overlaps(p, SUBNET_POOL));
  for (let i = 0; i < count; i++) {
    const base = SUBNET_POOL.addr + ((seed + i) % count) * 4;
    const candidate = { addr: base, len: 30 };
    if (relevant.some((p) => overlaps(p, candidate))) continue;
    return { cidr: `${formatIpv4(base)}/30`, hostAddr: formatIpv4(base + 1), nsAddr: formatIpv4(base + 2), prefixLen: 30 };
  }
  throw new Error(`no free /30 left in ${formatIpv4(SUBNET_POOL.addr)}/${SUBNET_POOL.len}`);
}

/** IPv6 (unique local, one /64 per instance) when the host itself has an IPv6 default route. */
export interface Subnet6 {
  cidr: string;
  hostAddr: string;
  nsAddr: string;
  prefixLen: 64;
}

export function ipv6Subnet(index: number): Subnet6 {
  const net = `fd70:7074:6170:${(index % 65536).toString(16)}`;
  return { cidr: `${net}::/64`, hostAddr: `${net}::1`, nsAddr: `${net}::2`, prefixLen: 64 };
}

/** Index of a v4 /30 inside the pool: reused for the instance's IPv6 /64 so both are unique together. */
export function subnetIndex(subnet: Subnet4): number {
  return ((parseIpv4(subnet.hostAddr) as number) - 1 - SUBNET_POOL.addr) / 4;
}

// ---------------------------------------------------------------- nftables

/**
 * The instance's own table: masquerade what leaves the device from its subnet(s). One table, created
 * and deleted as a whole (`nft delete table inet NAME`), so nothing else in the ruleset is touched.
 */
export function nftRuleset(names: InstanceNames, device: string | null, v4: Subnet4, v6: Subnet6 | null): string {
  const oif = device ? ` oifname "${checkInterfaceName(device)}"` : '';
  const lines = [
    `table inet ${names.table} {`,
    `  comment "proctap pid ${names.owner}: NAT for proctap run --isolate"`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${v4.cidr}${oif} masquerade`,
  ];
  if (v6) lines.push(`    ip6 saddr ${v6.cidr}${oif} masquerade`);
  lines.push('  }', '}');
  return `${lines.join('\n')}\n`;
}

/** iptables fallback (no nft binary, or the kernel refuses the nat chain): argv after `iptables`. */
export function iptablesNatRule(action: '-A' | '-D', names: InstanceNames, device: string | null, v4: Subnet4): string[] {
  const argv = ['-w', '-t', 'nat', action, 'POSTROUTING', '-s', v4.cidr];
  if (device) argv.push('-o', checkInterfaceName(device));
  argv.push('-m', 'comment', '--comment', names.comment, '-j', 'MASQUERADE');
  return argv;
}

// ---------------------------------------------------------------- DNS inside the namespace

/** Public resolvers, as nsntrace --use-public-dns: Quad9, Cloudflare, Google, OpenDNS. */
export const PUBLIC_NAMESERVERS = ['9.9.9.9', '1.1.1.1', '8.8.8.8', '208.67.222.222'];

export function publicResolvConf(): string {
  return `# written by proctap run --isolate --use-public-dns\n${PUBLIC_NAMESERVERS.map((s) => `nameserver ${s}`).join('\n')}\n`;
}

/** Nameservers of a resolv.conf that a namespace cannot reach (loopback ones: 127.0.0.53 and the like). */
export function loopbackNameservers(resolvConf: string): string[] {
  const servers = [...resolvConf.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]);
  return servers.filter((s) => s.startsWith('127.') || s === '::1');
}

export function onlyLoopbackNameservers(resolvConf: string): boolean {
  const servers = [...resolvConf.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1]);
  return servers.length > 0 && loopbackNameservers(resolvConf).length === servers.length;
}
