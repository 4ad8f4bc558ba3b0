// SPDX-License-Identifier: MIT
// Namespace mode, the side effects: the network namespace, the veth pair, addresses and routes (ip),
// the NAT table (nft, iptables as fallback), IP forwarding for the run, and the cleanup of what a
// killed instance left. Commands are run with argv arrays (never a shell); the names come from plan.ts.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isAlive } from '../proc/procfs';
import {
  checkInterfaceName,
  chooseSubnet,
  instanceNames,
  ipv6Subnet,
  iptablesNatRule,
  nftRuleset,
  onlyLoopbackNameservers,
  ownerOfComment,
  ownerOfInterface,
  ownerOfNetns,
  ownerOfTable,
  parsePrefix4,
  publicResolvConf,
  subnetIndex,
  type InstanceNames,
  type Prefix4,
  type Subnet4,
  type Subnet6,
} from './plan';

export const STATE_DIR = '/run/proctap';
const NETNS_DIR = '/run/netns';
const FORWARD_STATE = path.join(STATE_DIR, 'ip_forward.json');
const LOCK_DIR = path.join(STATE_DIR, 'isolate.lock');
const FORWARD_SYSCTLS = { ipv4: '/proc/sys/net/ipv4/ip_forward', ipv6: '/proc/sys/net/ipv6/conf/all/forwarding' } as const;

export class IsolateError extends Error {}

function run(file: string, args: string[], input?: string): string {
  try {
    return execFileSync(file, args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new IsolateError(`${file} not found (install iproute2 and nftables)`);
    const detail = (e.stderr ?? '').trim().split('\n')[0] || e.message.split('\n')[0];
    throw new IsolateError(`${file} ${args.join(' ')}: ${detail}`);
  }
}

const ip = (args: string[], input?: string) => run('ip', args, input);

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * A machine-wide lock for choosing subnets and editing the forwarding state: a directory made with
 * mkdir (atomic), holding the owner's pid; a dead owner's lock is broken.
 */
export function withIsolateLock<T>(fn: () => T, timeoutMs = 10_000): T {
  fs.mkdirSync(STATE_DIR, { recursive: true, mode: 0o755 });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      fs.mkdirSync(LOCK_DIR, { mode: 0o700 });
      fs.writeFileSync(path.join(LOCK_DIR, 'owner'), String(process.pid));
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        fs.mkdirSync(STATE_DIR, { recursive: true, mode: 0o755 }); /* removed by an instance that just finished */
        continue;
      }
      if (code !== 'EEXIST') throw err;
      let owner = NaN;
      try {
        owner = Number(fs.readFileSync(path.join(LOCK_DIR, 'owner'), 'utf8'));
      } catch {
        /* being created or removed right now */
      }
      if (Number.isInteger(owner) && owner > 0 && !isAlive(owner)) fs.rmSync(LOCK_DIR, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new IsolateError(`${LOCK_DIR} is held by pid ${owner}`);
      else sleepSync(5);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(LOCK_DIR, { recursive: true, force: true });
    try {
      fs.rmdirSync(STATE_DIR); /* leave nothing behind: only succeeds when no state is kept */
    } catch {
      /* not empty: forwarding state or another instance's lock */
    }
  }
}

// ---------------------------------------------------------------- IP forwarding, shared by instances

interface ForwardState {
  /** The values found before the first instance changed them. */
  original: { ipv4: string; ipv6: string };
  /** Instances relying on forwarding being on. */
  owners: number[];
}

function readForwardState(): ForwardState | null {
  try {
    return JSON.parse(fs.readFileSync(FORWARD_STATE, 'utf8')) as ForwardState;
  } catch {
    return null;
  }
}

const readSysctl = (file: string) => {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
};

/** Turns forwarding on for `owner` (call under the lock). Returns what it was before. */
function acquireForwarding(owner: number, ipv6: boolean): { ipv4: string; ipv6: string; changed: boolean } {
  const before = { ipv4: readSysctl(FORWARD_SYSCTLS.ipv4), ipv6: readSysctl(FORWARD_SYSCTLS.ipv6) };
  const state = readForwardState() ?? { original: before, owners: [] };
  state.owners = [...state.owners.filter(isAlive), owner];
  fs.writeFileSync(FORWARD_STATE, JSON.stringify(state));
  let changed = false;
  if (before.ipv4 !== '1') {
    fs.writeFileSync(FORWARD_SYSCTLS.ipv4, '1');
    changed = true;
  }
  if (ipv6 && before.ipv6 !== '' && before.ipv6 !== '1') {
    fs.writeFileSync(FORWARD_SYSCTLS.ipv6, '1');
    changed = true;
  }
  return { ...before, changed };
}

/** Drops `owner` (and dead owners); the last one out restores the original values (call under the lock). */
function releaseForwarding(owner: number | null): boolean {
  const state = readForwardState();
  if (!state) return false;
  state.owners = state.owners.filter((p) => p !== owner && isAlive(p));
  if (state.owners.length > 0) {
    fs.writeFileSync(FORWARD_STATE, JSON.stringify(state));
    return false;
  }
  if (state.original.ipv4 !== '') fs.writeFileSync(FORWARD_SYSCTLS.ipv4, state.original.ipv4);
  if (state.original.ipv6 !== '') fs.writeFileSync(FORWARD_SYSCTLS.ipv6, state.original.ipv6);
  fs.rmSync(FORWARD_STATE, { force: true });
  return true;
}

// ---------------------------------------------------------------- the instance

export interface IsolateOptions {
  owner: number;
  /** -d: NAT out of this device; undefined = the device of the default route. */
  device?: string;
  /** Turn IP forwarding on for the run (restored after); false refuses to, as nsntrace does. */
  forwarding: boolean;
  publicDns: boolean;
  log: (line: string) => void;
}

export interface Isolation {
  names: InstanceNames;
  /** /run/netns/<name>: for setns(2). */
  netnsPath: string;
  v4: Subnet4;
  v6: Subnet6 | null;
  /** NAT device, null when the host has no default route (the host itself is all the command reaches). */
  device: string | null;
  nat: 'nftables' | 'iptables' | 'none';
  forwarding: { before: string; changed: boolean };
  /** File to bind over /etc/resolv.conf in the command's mount namespace, if any. */
  resolvConf: string | null;
  dns: 'host' | 'public';
  teardown(): void;
}

function defaultRouteDevice(family: '-4' | '-6'): string | null {
  const routes = JSON.parse(ip(['-j', family, 'route', 'show', 'default']) || '[]') as Array<{ dev?: string }>;
  return routes.find((r) => r.dev)?.dev ?? null;
}

function prefixesInUse(): Prefix4[] {
  const routes = JSON.parse(ip(['-j', '-4', 'route', 'show', 'table', 'all']) || '[]') as Array<{ dst?: string }>;
  const addrs = JSON.parse(ip(['-j', '-4', 'addr', 'show']) || '[]') as Array<{
    addr_info?: Array<{ local?: string; prefixlen?: number }>;
  }>;
  const out: Prefix4[] = [];
  for (const r of routes) {
    const p = r.dst ? parsePrefix4(r.dst) : null;
    if (p) out.push(p);
  }
  for (const link of addrs) {
    for (const a of link.addr_info ?? []) {
      const p = a.local ? parsePrefix4(`${a.local}/${a.prefixlen ?? 32}`) : null;
      if (p) out.push(p);
    }
  }
  return out;
}

function checkDevice(device: string): string {
  checkInterfaceName(device);
  if (!fs.existsSync(path.join('/sys/class/net', device))) throw new IsolateError(`no such network device: ${device}`);
  return device;
}

function loadNat(names: InstanceNames, device: string | null, v4: Subnet4, v6: Subnet6 | null, log: (l: string) => void): 'nftables' | 'iptables' {
  try {
    run('nft', ['-f', '-'], nftRuleset(names, device, v4, v6));
    return 'nftables';
  } catch (err) {
    log(`proctap: nftables NAT failed (${(err as Error).message}); using iptables`);
    run('iptables', iptablesNatRule('-A', names, device, v4));
    return 'iptables';
  }
}

function removeNat(names: InstanceNames, kind: 'nftables' | 'iptables' | 'none', device: string | null, v4: Subnet4): void {
  if (kind === 'nftables') run('nft', ['delete', 'table', 'inet', names.table]);
  if (kind === 'iptables') run('iptables', iptablesNatRule('-D', names, device, v4));
}

/**
 * Creates the instance's namespace, veth pair, addresses, default routes and NAT; turns forwarding on
 * if asked. On failure, removes what it made before rethrowing.
 */
export function setupIsolation(options: IsolateOptions): Isolation {
  const names = instanceNames(options.owner);
  const device = options.device !== undefined ? checkDevice(options.device) : defaultRouteDevice('-4');
  if (device === null) options.log('proctap: the host has no default route: the isolated command can reach this host only');
  const forwardingOn = readSysctl(FORWARD_SYSCTLS.ipv4) === '1';
  if (!options.forwarding && !forwardingOn && device !== null) {
    throw new IsolateError('IP forwarding is off and --no-ip-forward was given: enable it with sysctl net.ipv4.ip_forward=1');
  }
  const hostResolv = readSysctl('/etc/resolv.conf');
  if (!options.publicDns && onlyLoopbackNameservers(hostResolv)) {
    options.log('proctap: only loopback nameservers in /etc/resolv.conf: names will not resolve in the namespace (try --use-public-dns)');
  }

  const undo: Array<() => void> = [];
  const rollback = () => {
    for (const step of undo.splice(0).reverse()) {
      try {
        step();
      } catch {
        /* best effort: proctap cleanup finds the rest by name */
      }
    }
  };
  try {
    return withIsolateLock(() => {
      const v4 = chooseSubnet(prefixesInUse(), options.owner % 16384);
      const v6Device = defaultRouteDevice('-6');
      const v6 = v6Device !== null && device !== null ? ipv6Subnet(subnetIndex(v4)) : null;

      ip(['netns', 'add', names.netns]);
      undo.push(() => ip(['netns', 'delete', names.netns]));
      ip(['link', 'add', names.hostIf, 'type', 'veth', 'peer', 'name', names.nsIf, 'netns', names.netns]);
      undo.push(() => ip(['link', 'delete', names.hostIf]));
      const host = [`addr add ${v4.hostAddr}/30 dev ${names.hostIf}`];
      if (v6) host.push(`addr add ${v6.hostAddr}/64 dev ${names.hostIf} nodad`);
      host.push(`link set ${names.hostIf} up`);
      ip(['-batch', '-'], `${host.join('\n')}\n`);
      const inside = ['link set lo up', `addr add ${v4.nsAddr}/30 dev ${names.nsIf}`];
      if (v6) inside.push(`addr add ${v6.nsAddr}/64 dev ${names.nsIf} nodad`);
      inside.push(`link set ${names.nsIf} up`, `route add default via ${v4.hostAddr} dev ${names.nsIf}`);
      if (v6) inside.push(`route add ::/0 via ${v6.hostAddr} dev ${names.nsIf}`);
      ip(['-n', names.netns, '-batch', '-'], `${inside.join('\n')}\n`);

      let nat: Isolation['nat'] = 'none';
      if (device !== null) {
        nat = loadNat(names, device, v4, v6, options.log);
        const kind = nat;
        undo.push(() => removeNat(names, kind, device, v4));
      }
      let forwarding = { before: readSysctl(FORWARD_SYSCTLS.ipv4), changed: false };
      if (device !== null && options.forwarding) {
        const f = acquireForwarding(options.owner, v6 !== null);
        undo.push(() => releaseForwarding(options.owner)); // the rollback runs under the lock
        forwarding = { before: f.ipv4, changed: f.changed };
        if (f.changed) options.log('proctap: IP forwarding enabled for this run (restored after)');
      }
      let resolvConf: string | null = null;
      if (options.publicDns) {
        resolvConf = path.join(STATE_DIR, `${names.netns}.resolv.conf`);
        fs.writeFileSync(resolvConf, publicResolvConf(), { mode: 0o644 });
        const file = resolvConf;
        undo.push(() => fs.rmSync(file, { force: true }));
      }
      const isolation: Isolation = {
        names,
        netnsPath: path.join(NETNS_DIR, names.netns),
        v4,
        v6,
        device,
        nat,
        forwarding,
        resolvConf,
        dns: options.publicDns ? 'public' : 'host',
        teardown: () => teardownIsolation(isolation),
      };
      return isolation;
    });
  } catch (err) {
    withIsolateLock(rollback);
    throw err;
  }
}

/** Removes everything setupIsolation made, in reverse order; collects errors, throws the first. */
export function teardownIsolation(iso: Isolation): void {
  const errors: Error[] = [];
  const attempt = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      errors.push(err as Error);
    }
  };
  withIsolateLock(() => {
    if (iso.resolvConf) attempt(() => fs.rmSync(iso.resolvConf as string, { force: true }));
    attempt(() => releaseForwarding(iso.names.owner));
    attempt(() => removeNat(iso.names, iso.nat, iso.device, iso.v4));
    attempt(() => ip(['link', 'delete', iso.names.hostIf]));
    attempt(() => ip(['netns', 'delete', iso.names.netns]));
  });
  if (errors.length) throw errors[0];
}

// ---------------------------------------------------------------- leftovers of killed instances

/** Cheap check run at every start: is there anything a dead instance may have left? */
export function hasStaleIsolation(): boolean {
  let names: string[] = [];
  try {
    names = fs.readdirSync(NETNS_DIR);
  } catch {
    /* no /run/netns */
  }
  if (names.some((n) => isDeadOwner(ownerOfNetns(n)))) return true;
  const state = readForwardState();
  return state !== null && state.owners.some((p) => !isAlive(p));
}

const isDeadOwner = (owner: number | null) => owner !== null && owner !== process.pid && !isAlive(owner);

/** Removes netns, veth, nft tables and iptables rules of proctap instances that no longer run. */
export function removeStaleIsolation(): string[] {
  const removed: string[] = [];
  const tryRemove = (what: string, fn: () => void) => {
    try {
      fn();
      removed.push(what);
    } catch {
      /* gone meanwhile */
    }
  };
  withIsolateLock(() => {
    let tables: Array<{ family: string; name: string }> = [];
    try {
      const parsed = JSON.parse(run('nft', ['-j', 'list', 'tables'])) as { nftables: Array<{ table?: { family: string; name: string } }> };
      tables = parsed.nftables.flatMap((e) => (e.table ? [e.table] : []));
    } catch {
      /* no nft */
    }
    for (const t of tables) {
      if (t.family === 'inet' && isDeadOwner(ownerOfTable(t.name))) tryRemove(`nft table inet ${t.name}`, () => run('nft', ['delete', 'table', 'inet', t.name]));
    }
    let rules: string[] = [];
    try {
      rules = run('iptables', ['-w', '-t', 'nat', '-S', 'POSTROUTING']).split('\n');
    } catch {
      /* no iptables */
    }
    for (const rule of rules) {
      const m = /--comment "?(proctap-\d+)"?/.exec(rule);
      if (!m || !isDeadOwner(ownerOfComment(m[1])) || !rule.startsWith('-A ')) continue;
      const argv = rule.replace(/^-A /, '-D ').split(/\s+/).map((a) => a.replace(/^"|"$/g, ''));
      tryRemove(`iptables rule ${m[1]}`, () => run('iptables', ['-w', '-t', 'nat', ...argv]));
    }
    const links = JSON.parse(ip(['-j', 'link', 'show']) || '[]') as Array<{ ifname: string }>;
    for (const l of links) {
      if (/h$/.test(l.ifname) && isDeadOwner(ownerOfInterface(l.ifname))) tryRemove(`veth ${l.ifname}`, () => ip(['link', 'delete', l.ifname]));
    }
    let netns: string[] = [];
    try {
      netns = fs.readdirSync(NETNS_DIR);
    } catch {
      /* none */
    }
    for (const n of netns) {
      if (isDeadOwner(ownerOfNetns(n))) tryRemove(`netns ${n}`, () => ip(['netns', 'delete', n]));
    }
    for (const f of fs.readdirSync(STATE_DIR)) {
      const m = /^(proctap-\d+)\.resolv\.conf$/.exec(f);
      if (m && isDeadOwner(ownerOfNetns(m[1]))) tryRemove(path.join(STATE_DIR, f), () => fs.rmSync(path.join(STATE_DIR, f)));
    }
    const state = readForwardState();
    if (state && state.owners.some((p) => !isAlive(p))) {
      const restored = releaseForwarding(null);
      removed.push(restored ? `ip_forward restored to ${state.original.ipv4}` : 'dead owners of ip_forward');
    }
  });
  return removed;
}
