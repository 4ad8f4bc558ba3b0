// SPDX-License-Identifier: MIT
// The container of every traced process, kept on its process-tree node as records arrive. A child is
// born in its parent's cgroup, so a fork inherits the parent's container without a /proc read; an exec
// reads /proc/PID/cgroup again (a runtime's init joins the container's cgroup, then execs the
// payload); a process first seen through its traffic is read once. What is still unknown at the end is
// read for the processes that still run.
import type { TraceRecord } from '../kernel/records';
import type { ProcessTree } from '../model/tree';
import { containerLabel, parseContainerCgroup } from '../proc/container';
import { ContainerLookupError, ContainerNames, describeContainer, findContainer } from '../proc/containers';
import type { ContainerReport, Target } from '../schema/report';

export class ContainerTracker {
  private lastRecord: TraceRecord | null = null;
  /** The container of the cgroup attach --cgroup / --container matches processes in. */
  private matched: ContainerReport | null | undefined;
  private lastContainer: ContainerReport | null | undefined;

  constructor(private readonly names = new ContainerNames()) {}

  /** After the model took the record in (its process is in the tree). */
  observe(record: TraceRecord, tree: ProcessTree): void {
    switch (record.type) {
      case 'fork': {
        const node = tree.get(record.tgid, record.startTime);
        if (!node) break;
        const parent = tree.get(record.ppid);
        if (parent && parent.container === undefined) this.read(parent);
        if (parent && parent.container !== undefined) node.container = parent.container;
        else this.read(node);
        this.remember(record, node.container);
        break;
      }
      case 'exec': {
        const node = tree.get(record.tgid, record.startTime);
        if (!node) break;
        this.read(node);
        // gone already (a short-lived process, its record ~50 ms behind): where it matched --cgroup or
        // --container it was in that cgroup when it exec'd; otherwise it most likely still was in its parent's
        if (node.container === undefined) {
          const parent = tree.get(record.ppid);
          if (record.matched && this.matched !== undefined) node.container = this.matched;
          else if (parent?.container !== undefined) node.container = parent.container;
        }
        this.remember(record, node.container);
        break;
      }
      case 'flow': {
        if (!record.isNew) break;
        const node = tree.get(record.tgid, record.key.startTime);
        if (node && node.container === undefined) this.read(node);
        break;
      }
      default:
        break;
    }
  }

  /** The NDJSON fields of the record observed last (fork and exec lines name the container). */
  eventFields(record: TraceRecord): { container: ContainerReport } | undefined {
    if (record !== this.lastRecord || !this.lastContainer) return undefined;
    return { container: this.lastContainer };
  }

  /** At the end of the trace: processes whose container is still unknown, where they still run. */
  resolveRemaining(tree: ProcessTree): void {
    for (const node of tree.list()) if (node.container === undefined && node.exitNs === null) this.read(node);
  }

  /** attach --cgroup / --container: processes that start matching exec'd in this cgroup (v2 path). */
  setMatchedCgroup(cgroupPath: string, root = '/'): void {
    const ref = parseContainerCgroup(cgroupPath);
    this.matched = ref ? describeContainer(ref, root) : null;
  }

  /** A process known from /proc (an attach target): read now, while it runs. */
  resolve(node: { pid: number; container?: ContainerReport | null }): void {
    this.read(node);
  }

  private read(node: { pid: number; container?: ContainerReport | null }): void {
    const found = this.names.ofPid(node.pid);
    if (found !== undefined) node.container = found;
  }

  private remember(record: TraceRecord, container: ContainerReport | null | undefined): void {
    this.lastRecord = record;
    this.lastContainer = container;
  }
}

/** attach --container: the container's cgroup v2 (hooked and matched like --cgroup) and its processes now. */
export function containerTarget(query: string, root = '/'): { target: Extract<Target, { kind: 'container' }>; pids: number[] } {
  const found = findContainer(query, root);
  if (!found.ref.v2) {
    throw new ContainerLookupError(
      `container ${containerLabel(found.info)} has no cgroup v2 of its own (its runtime uses only the v1 hierarchies here): use its pids or --comm`,
    );
  }
  return { target: { kind: 'container', query, container: found.info, cgroup: found.ref.cgroup }, pids: found.pids };
}
