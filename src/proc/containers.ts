// SPDX-License-Identifier: MIT
// Container names where the runtimes keep them (read-only file reads; no runtime CLI, no socket):
//   docker          /var/lib/docker/containers/<id>/config.v2.json: "Name" (and the kubelet's labels)
//   podman, cri-o   containers/storage: /var/lib/containers/storage/<driver>-containers/containers.json
//                   ("names"); cri-o also /run/containers/storage/<driver>-containers/<id>/userdata/config.json
//                   (OCI annotations io.kubernetes.container.name, .pod.name, .pod.namespace)
//   containerd      /run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/config.json (OCI
//                   annotations io.kubernetes.cri.container-name, .sandbox-name, .sandbox-namespace;
//                   nerdctl/name)
//   systemd-nspawn, lxc: the name is in the cgroup path itself.
// Rootless podman keeps its storage in the user's home: not looked up (the id is still reported).
// Every path is under `root` (tests build a fake tree).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ContainerReport } from '../schema/report';
import { containerLabel, containerOfProcCgroup, type ContainerRef } from './container';

function readJson(file: string): Record<string, unknown> | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

function subdirs(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

type Found = Omit<ContainerReport, 'id' | 'podUid'>;

function kubernetesFields(a: Record<string, unknown>, container: string, pod: string, namespace: string): Partial<ContainerReport> {
  return {
    ...(str(a[container]) ? { name: str(a[container]) } : {}),
    ...(str(a[pod]) ? { podName: str(a[pod]) } : {}),
    ...(str(a[namespace]) ? { podNamespace: str(a[namespace]) } : {}),
  };
}

function fromDocker(root: string, id: string): Found | null {
  const config = readJson(path.join(root, 'var/lib/docker/containers', id, 'config.v2.json'));
  if (!config) return null;
  const labels = ((config.Config as Record<string, unknown> | undefined)?.Labels ?? {}) as Record<string, unknown>;
  const k8s = kubernetesFields(labels, 'io.kubernetes.container.name', 'io.kubernetes.pod.name', 'io.kubernetes.pod.namespace');
  const name = str(config.Name)?.replace(/^\//, '');
  return { runtime: 'docker', ...(name ? { name } : {}), ...k8s };
}

function fromContainersStorage(root: string, id: string, runtime: 'podman' | 'cri-o'): Found | null {
  const storage = path.join(root, 'var/lib/containers/storage');
  for (const dir of subdirs(storage).filter((d) => d.endsWith('-containers'))) {
    const list = readJson(path.join(storage, dir, 'containers.json')) as unknown;
    if (!Array.isArray(list)) continue;
    const entry = list.find((c) => (c as { id?: unknown }).id === id) as { names?: unknown } | undefined;
    const name = Array.isArray(entry?.names) ? str(entry.names[0]) : undefined;
    if (entry) return { runtime, ...(name ? { name } : {}) };
  }
  return null;
}

function fromCriO(root: string, id: string): Found | null {
  const run = path.join(root, 'run/containers/storage');
  for (const dir of subdirs(run).filter((d) => d.endsWith('-containers'))) {
    const spec = readJson(path.join(run, dir, id, 'userdata/config.json'));
    const annotations = (spec?.annotations ?? null) as Record<string, unknown> | null;
    if (annotations) return { runtime: 'cri-o', ...kubernetesFields(annotations, 'io.kubernetes.container.name', 'io.kubernetes.pod.name', 'io.kubernetes.pod.namespace') };
  }
  return fromContainersStorage(root, id, 'cri-o');
}

function fromContainerd(root: string, id: string): Found | null {
  const tasks = path.join(root, 'run/containerd/io.containerd.runtime.v2.task');
  for (const namespace of subdirs(tasks)) {
    const spec = readJson(path.join(tasks, namespace, id, 'config.json'));
    if (!spec) continue;
    const a = (spec.annotations ?? {}) as Record<string, unknown>;
    const k8s = kubernetesFields(a, 'io.kubernetes.cri.container-name', 'io.kubernetes.cri.sandbox-name', 'io.kubernetes.cri.sandbox-namespace');
    // docker's containers live in containerd's "moby" namespace: their names are dockerd's
    if (namespace === 'moby') return fromDocker(root, id) ?? { runtime: 'docker' };
    const nerdctl = str(a['nerdctl/name']);
    return { runtime: 'containerd', ...(nerdctl ? { name: nerdctl } : {}), ...k8s };
  }
  return null;
}

/** A container's report entry: what the path says, plus the name (and pod) from the runtime's files. */
export function describeContainer(ref: ContainerRef, root = '/'): ContainerReport {
  const base: ContainerReport = { runtime: ref.runtime, id: ref.id, ...(ref.name ? { name: ref.name } : {}), ...(ref.podUid ? { podUid: ref.podUid } : {}) };
  let found: Found | null = null;
  switch (ref.runtime) {
    case 'docker':
      found = fromDocker(root, ref.id);
      break;
    case 'podman':
      found = fromContainersStorage(root, ref.id, 'podman');
      break;
    case 'cri-o':
      found = fromCriO(root, ref.id);
      break;
    case 'containerd':
      found = fromContainerd(root, ref.id);
      break;
    case 'cri':
      found = fromContainerd(root, ref.id) ?? fromCriO(root, ref.id) ?? fromDocker(root, ref.id);
      break;
    case 'systemd-nspawn':
    case 'lxc':
      break;
  }
  return found ? { ...base, ...found, id: ref.id, ...(ref.podUid ? { podUid: ref.podUid } : {}) } : base;
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Containers of live processes, cached by /proc/PID/cgroup text (containers are few; so are cgroups). */
export class ContainerNames {
  private readonly byCgroup = new Map<string, ContainerReport | null>();

  constructor(private readonly root = '/') {}

  /** The container of a running process, null when it runs in none, undefined when it is gone. */
  ofPid(pid: number): ContainerReport | null | undefined {
    const text = readText(path.join(this.root, 'proc', String(pid), 'cgroup'));
    if (text === null) return undefined;
    let info = this.byCgroup.get(text);
    if (info === undefined) {
      const ref = containerOfProcCgroup(text);
      info = ref ? describeContainer(ref, this.root) : null;
      // bounded: a host with more distinct cgroups than this simply reads their names again
      if (this.byCgroup.size >= 4096) this.byCgroup.clear();
      this.byCgroup.set(text, info);
    }
    return info;
  }
}

export interface RunningContainer {
  ref: ContainerRef & { v2: boolean };
  info: ContainerReport;
  pids: number[];
}

/** Every container with a running process (read from /proc/[0-9]*\/cgroup). */
export function runningContainers(root = '/'): RunningContainer[] {
  const byKey = new Map<string, RunningContainer>();
  for (const entry of subdirs(path.join(root, 'proc'))) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const text = readText(path.join(root, 'proc', entry, 'cgroup'));
    const ref = text === null ? null : containerOfProcCgroup(text);
    if (!ref) continue;
    const key = `${ref.runtime}/${ref.id}/${ref.cgroup}`;
    let c = byKey.get(key);
    if (!c) byKey.set(key, (c = { ref, info: describeContainer(ref, root), pids: [] }));
    c.pids.push(Number(entry));
  }
  return [...byKey.values()];
}

export class ContainerLookupError extends Error {}

/**
 * attach --container ID|NAME: the running container with that name, that id, or an id starting with
 * it (as docker and podman take a prefix); an ambiguous prefix or an unknown name is an error.
 */
export function findContainer(query: string, root = '/'): RunningContainer {
  if (query === '' || /[\s/]/.test(query)) throw new ContainerLookupError(`not a container id or name: '${query}'`);
  const all = runningContainers(root);
  const exact = all.filter((c) => c.info.name === query || c.info.id === query);
  const matches = exact.length > 0 ? exact : /^[0-9a-f]+$/.test(query) ? all.filter((c) => c.info.id.startsWith(query)) : [];
  if (matches.length === 0) {
    const known = all.map((c) => containerLabel(c.info)).slice(0, 8).join(', ');
    throw new ContainerLookupError(`no running container '${query}' (${all.length ? `running: ${known}${all.length > 8 ? ', ...' : ''}` : 'none is running'})`);
  }
  if (matches.length > 1) throw new ContainerLookupError(`'${query}' names ${matches.length} containers (${matches.map((c) => containerLabel(c.info)).join(', ')}): give more of the id`);
  return matches[0];
}
