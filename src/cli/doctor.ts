// SPDX-License-Identifier: MIT
// `proctap doctor`: what this kernel allows, found by really loading and attaching, not by guessing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { loadNative } from '../native';
import { cgroup2Mount, createCgroup, ownedCgroupName, removeCgroup } from '../proc/cgroup';
import type { Backend } from '../schema/report';
import { AUTO_ORDER, BackendError, Probes } from '../trace/probes';
import { PROC_CONNECTOR_OPTIONS } from '../trace/session';
import { missingCapabilities } from './privileges';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DoctorResult {
  kernel: string;
  libbpf: string;
  checks: Check[];
  backends: Array<{ backend: Backend; usable: boolean; loads: boolean; reason: string }>;
  /** What `run --backend auto` would pick, or null when nothing works. */
  selectedBackend: Backend | null;
}

/** A small, plain configuration: doctor only asks whether the programs load and attach. */
const PROBE_CONFIG = { intervalMs: 100, detailCalls: false, countUnownedPackets: false, followChildren: true, ringBufferBytes: 1 << 16 };

function check(name: string, probe: () => string): Check {
  try {
    return { name, ok: true, detail: probe() };
  } catch (err) {
    return { name, ok: false, detail: (err as Error).message.split('\n')[0] };
  }
}

function probeBackend(backend: Backend): { usable: boolean; loads: boolean; reason: string } {
  try {
    const probes = Probes.open({ ...PROBE_CONFIG, backend });
    probes.close();
    return { usable: true, loads: true, reason: 'loads and attaches' };
  } catch (err) {
    const attempt = (err as BackendError).attempts?.[0];
    return { usable: false, loads: attempt?.loaded ?? false, reason: attempt?.reason ?? (err as Error).message };
  }
}

export async function runDoctor(): Promise<DoctorResult> {
  const native = loadNative();
  const checks: Check[] = [];
  checks.push(
    check('privileges', () => {
      const missing = missingCapabilities(fs.readFileSync('/proc/self/status', 'utf8'));
      if (missing.length) throw new Error(`missing ${missing.join(', ')}`);
      return 'CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN';
    }),
    check('kernel BTF', () => {
      fs.accessSync('/sys/kernel/btf/vmlinux');
      return '/sys/kernel/btf/vmlinux';
    }),
  );
  let mount: string | null = null;
  checks.push(
    check('cgroup v2', () => {
      mount = cgroup2Mount();
      return mount;
    }),
  );
  checks.push(
    check('kprobes', () => {
      const files = ['/sys/kernel/tracing/kprobe_events', '/sys/kernel/debug/tracing/kprobe_events'];
      if (!files.some((f) => fs.existsSync(f))) throw new Error('not available (kernel built without CONFIG_KPROBES)');
      return 'kprobe_events present';
    }),
  );
  const backends = AUTO_ORDER.map((backend) => ({ backend, ...probeBackend(backend) }));
  const selectedBackend = backends.find((b) => b.usable)?.backend ?? null;

  if (selectedBackend) {
    const probes = Probes.open({ ...PROBE_CONFIG, backend: selectedBackend });
    try {
      checks.push(
        check('process and TCP lifecycle tracepoints', () => {
          probes.attachTracing();
          return 'sched_process_fork/exec/exit, inet_sock_set_state (tp_btf)';
        }),
      );
      if (mount) {
        const dir = createCgroup(mount, ownedCgroupName(process.pid, 'doctor'));
        try {
          checks.push(
            check('cgroup hooks', () => {
              probes.attachCgroup(dir);
              return 'sock_create/release, sendmsg/recvmsg 4/6, cgroup_skb ingress/egress';
            }),
          );
        } finally {
          probes.close();
          await removeCgroup(dir);
        }
      }
    } finally {
      probes.close();
    }
  }
  checks.push(
    check('proc connector', () => {
      native.openProcConnector(() => {}, PROC_CONNECTOR_OPTIONS).close();
      return 'netlink CN_IDX_PROC';
    }),
  );
  return { kernel: os.release(), libbpf: native.libbpfVersion(), checks, backends, selectedBackend };
}

export function renderDoctor(result: DoctorResult): string {
  const lines = [`kernel ${result.kernel}, libbpf ${result.libbpf}`, ''];
  for (const c of result.checks) lines.push(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`);
  lines.push('', 'socket I/O backends (auto-selection order):');
  for (const b of result.backends) lines.push(`${b.usable ? 'ok  ' : 'no  '}  ${b.backend}: ${b.reason}`);
  lines.push('', result.selectedBackend ? `run would use: ${result.selectedBackend}` : 'run cannot trace on this kernel');
  return lines.join('\n');
}
