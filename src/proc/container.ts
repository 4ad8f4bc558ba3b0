// SPDX-License-Identifier: MIT
// Which container a process runs in, from its cgroup path alone. Pure: text in, data out; the names
// the runtimes keep elsewhere are looked up by containers.ts.
//
// Shapes recognised (the innermost match wins: a container inside a container is the inner one):
//   docker          /docker/<id>                       (cgroupfs driver)
//                   /system.slice/docker-<id>.scope    (systemd driver; rootless: under user@UID.service)
//   containerd      /system.slice/cri-containerd-<id>.scope, nerdctl-<id>.scope, /<namespace>/<id>
//   cri-o           crio-<id>.scope, crio-<id>          (crio-conmon-<id> is the monitor, not the container)
//   podman          /machine.slice/libpod-<id>.scope, /libpod_parent/libpod-<id>   (libpod-conmon-<id>: monitor)
//   Kubernetes      /kubepods/<qos>/pod<uid>/<id> (cgroupfs) or
//                   /kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime>-<id>.scope
//   systemd-nspawn  /machine.slice/machine-<name>.scope, /machine.slice/systemd-nspawn@<name>.service/payload
//   lxc             /lxc.payload.<name>, /lxc/<name>
// <id> is 64 hex digits. Names in systemd unit names are unescaped (\x2d is "-").

export type ContainerRuntime = 'docker' | 'containerd' | 'cri-o' | 'podman' | 'systemd-nspawn' | 'lxc' | 'cri';

export interface ContainerRef {
  /** 'cri': a Kubernetes container whose runtime the path does not tell (kubepods with the cgroupfs driver). */
  runtime: ContainerRuntime;
  /** 64 hex digits, or the machine name (systemd-nspawn, lxc). */
  id: string;
  /** The container's own cgroup (path below the hierarchy's root): its processes are in it or below it. */
  cgroup: string;
  /** From the path itself (systemd-nspawn, lxc). */
  name?: string;
  /** Kubernetes pod UID (with dashes), where the path carries one. */
  podUid?: string;
}

const ID = '[0-9a-f]{64}';
const SCOPED: Array<{ re: RegExp; runtime: ContainerRuntime }> = [
  { re: new RegExp(`^docker-(${ID})\\.scope$`), runtime: 'docker' },
  { re: new RegExp(`^cri-containerd-(${ID})\\.scope$`), runtime: 'containerd' },
  { re: new RegExp(`^nerdctl-(${ID})\\.scope$`), runtime: 'containerd' },
  { re: new RegExp(`^crio-(${ID})(?:\\.scope)?$`), runtime: 'cri-o' },
  { re: new RegExp(`^libpod-(${ID})(?:\\.scope)?$`), runtime: 'podman' },
];
const BARE_ID = new RegExp(`^${ID}$`);
const POD_CGROUPFS = /^pod([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
const POD_SYSTEMD = /^kubepods(?:-[a-z]+)?-pod([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})\.slice$/;
const NSPAWN_SCOPE = /^machine-(.+)\.scope$/;
const NSPAWN_SERVICE = /^systemd-nspawn@(.+)\.service$/;
const LXC_PAYLOAD = /^lxc\.payload\.(.+)$/;

/** systemd's unit-name escaping undone: "\x2d" -> "-" (and any other \xNN). */
export function unescapeUnitName(text: string): string {
  return text.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The container a cgroup path belongs to, or null (a host process). */
export function parseContainerCgroup(cgroupPath: string): ContainerRef | null {
  const segments = cgroupPath.split('/').filter(Boolean);
  let found: ContainerRef | null = null;
  let podUid: string | undefined;
  const upTo = (i: number) => `/${segments.slice(0, i + 1).join('/')}`;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i];
    const pod = POD_CGROUPFS.exec(s) ?? POD_SYSTEMD.exec(s);
    if (pod) {
      podUid = pod[1].replace(/_/g, '-');
      continue;
    }
    const scoped = SCOPED.map(({ re, runtime }) => ({ m: re.exec(s), runtime })).find((x) => x.m);
    if (scoped?.m) {
      found = { runtime: scoped.runtime, id: scoped.m[1], cgroup: upTo(i), ...(podUid ? { podUid } : {}) };
      continue;
    }
    if (BARE_ID.test(s) && i > 0) {
      const parent = segments[i - 1];
      const runtime: ContainerRuntime = parent === 'docker' ? 'docker' : podUid ? 'cri' : 'containerd';
      found = { runtime, id: s, cgroup: upTo(i), ...(podUid ? { podUid } : {}) };
      continue;
    }
    const scope = segments[i - 1] === 'machine.slice' ? NSPAWN_SCOPE.exec(s) : null;
    // machined also registers libvirt's virtual machines ("qemu-1-vm"): a VM is not a container
    if (scope && !/^qemu-\d+-/.test(unescapeUnitName(scope[1]))) {
      const name = unescapeUnitName(scope[1]);
      found = { runtime: 'systemd-nspawn', id: name, name, cgroup: upTo(i) };
      continue;
    }
    const service = NSPAWN_SERVICE.exec(s);
    if (service) {
      const name = unescapeUnitName(service[1]);
      // newer systemd puts the container in ".../payload" and nspawn itself in ".../supervisor"
      if (segments[i + 1] === 'supervisor') return found;
      found = { runtime: 'systemd-nspawn', id: name, name, cgroup: upTo(segments[i + 1] === 'payload' ? i + 1 : i) };
      continue;
    }
    const lxc = LXC_PAYLOAD.exec(s) ?? (segments[i - 1] === 'lxc' && i === 1 ? [s, s] : null);
    if (lxc) found = { runtime: 'lxc', id: lxc[1], name: lxc[1], cgroup: upTo(i) };
  }
  return found;
}

export interface ProcCgroupLine {
  /** 0 for cgroup v2; v1 hierarchies have their own numbers. */
  hierarchy: number;
  controllers: string;
  path: string;
}

export function parseProcCgroup(text: string): ProcCgroupLine[] {
  const lines: ProcCgroupLine[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m) lines.push({ hierarchy: Number(m[1]), controllers: m[2], path: m[3] });
  }
  return lines;
}

/**
 * The container of a process from its /proc/PID/cgroup text. The v2 line first; where it names no
 * container (a hybrid system whose runtime uses only v1 hierarchies), the v1 lines, name=systemd first.
 * `v2` says whether the container's cgroup is a cgroup v2 one (what attach --container hooks onto).
 */
export function containerOfProcCgroup(text: string): (ContainerRef & { v2: boolean }) | null {
  const lines = parseProcCgroup(text);
  const v2 = lines.find((l) => l.hierarchy === 0 && l.controllers === '');
  const fromV2 = v2 ? parseContainerCgroup(v2.path) : null;
  if (fromV2) return { ...fromV2, v2: true };
  const v1 = [...lines.filter((l) => l.controllers === 'name=systemd'), ...lines.filter((l) => l.hierarchy !== 0 && l.controllers !== 'name=systemd')];
  for (const line of v1) {
    const ref = parseContainerCgroup(line.path);
    if (ref) return { ...ref, v2: false };
  }
  return null;
}

/** How a container is named in one line of text (pcapng comments, metrics labels): its name, else its
 *  id cut to 12 characters as docker and podman print it. */
export function containerLabel(c: { id: string; name?: string }): string {
  return c.name ?? (/^[0-9a-f]{64}$/.test(c.id) ? c.id.slice(0, 12) : c.id);
}
