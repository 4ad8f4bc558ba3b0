// SPDX-License-Identifier: MIT
// Containers from cgroup paths as each runtime makes them, and their names from the runtimes' own
// files (a fake root laid out like a host running them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { containerLabel, containerOfProcCgroup, parseContainerCgroup, unescapeUnitName } from '../../src/proc/container';
import { ContainerLookupError, ContainerNames, describeContainer, findContainer } from '../../src/proc/containers';
import { ContainerTracker } from '../../src/trace/containers';
import { ProcessTree } from '../../src/model/tree';
import type { TraceRecord } from '../../src/kernel/records';
import { renderReport } from '../../src/render/table';
import { emptyReport } from './synthreport';
import type { ProcessReport } from '../../src/schema/report';

const ID = 'dd96cc2c5968efd482918be0e255b4d04bd7756786cdb83db97c84fabcef2330';
const ID2 = '4f1ab0c3c8e94e2a8d3e0c2b1a9f8e7d6c5b4a3928170695a4b3c2d1e0f9a8b7';
const UID = '7d1f5c38-2b4e-4b43-9c3e-5a0f2e6d9b11';

test('docker: cgroupfs and systemd drivers, rootless', () => {
  assert.deepEqual(parseContainerCgroup(`/docker/${ID}`), { runtime: 'docker', id: ID, cgroup: `/docker/${ID}` });
  assert.deepEqual(parseContainerCgroup(`/system.slice/docker-${ID}.scope`), { runtime: 'docker', id: ID, cgroup: `/system.slice/docker-${ID}.scope` });
  const rootless = `/user.slice/user-1000.slice/user@1000.service/app.slice/docker-${ID}.scope`;
  assert.equal(parseContainerCgroup(rootless)?.runtime, 'docker');
  // dockerd itself and its containerd shims are not containers
  assert.equal(parseContainerCgroup('/system.slice/docker.service'), null);
  assert.equal(parseContainerCgroup('/system.slice/containerd.service'), null);
});

test('Kubernetes: the pod UID with either cgroup driver, the runtime from the scope name', () => {
  const systemd = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-${ID}.scope`;
  assert.deepEqual(parseContainerCgroup(systemd), { runtime: 'containerd', id: ID, cgroup: systemd, podUid: UID });
  const guaranteed = `/kubepods.slice/kubepods-pod${UID.replace(/-/g, '_')}.slice/crio-${ID}.scope`;
  assert.deepEqual(parseContainerCgroup(guaranteed), { runtime: 'cri-o', id: ID, cgroup: guaranteed, podUid: UID });
  // cgroupfs driver: a bare id under the pod; which CRI runtime, only its files can tell
  const cgroupfs = `/kubepods/besteffort/pod${UID}/${ID}`;
  assert.deepEqual(parseContainerCgroup(cgroupfs), { runtime: 'cri', id: ID, cgroup: cgroupfs, podUid: UID });
  assert.deepEqual(parseContainerCgroup(`/kubepods/burstable/pod${UID}/crio-${ID}`)?.runtime, 'cri-o');
  // the pod's own cgroup is not a container; cri-o's monitor is not the container either
  assert.equal(parseContainerCgroup(`/kubepods/burstable/pod${UID}`), null);
  assert.equal(parseContainerCgroup(`/kubepods.slice/kubepods-pod${UID.replace(/-/g, '_')}.slice/crio-conmon-${ID}.scope`), null);
});

test('podman: systemd and cgroupfs managers, pods, nested cgroups; conmon is not the container', () => {
  assert.deepEqual(parseContainerCgroup(`/machine.slice/libpod-${ID}.scope`), { runtime: 'podman', id: ID, cgroup: `/machine.slice/libpod-${ID}.scope` });
  assert.deepEqual(parseContainerCgroup(`/libpod_parent/libpod-${ID}`), { runtime: 'podman', id: ID, cgroup: `/libpod_parent/libpod-${ID}` });
  const inPod = `/machine.slice/machine-libpod_pod_${ID2}.slice/libpod-${ID}.scope/container`;
  assert.deepEqual(parseContainerCgroup(inPod), { runtime: 'podman', id: ID, cgroup: `/machine.slice/machine-libpod_pod_${ID2}.slice/libpod-${ID}.scope` });
  assert.equal(parseContainerCgroup(`/machine.slice/libpod-conmon-${ID}.scope`), null);
  assert.equal(parseContainerCgroup(`/libpod_parent/conmon`), null);
});

test('systemd-nspawn, lxc and plain containerd; a VM registered with machined is not a container', () => {
  assert.deepEqual(parseContainerCgroup('/machine.slice/machine-web\\x2d01.scope'), { runtime: 'systemd-nspawn', id: 'web-01', name: 'web-01', cgroup: '/machine.slice/machine-web\\x2d01.scope' });
  assert.deepEqual(parseContainerCgroup('/machine.slice/systemd-nspawn@db.service/payload/system.slice/x.service'), {
    runtime: 'systemd-nspawn', id: 'db', name: 'db', cgroup: '/machine.slice/systemd-nspawn@db.service/payload',
  });
  assert.equal(parseContainerCgroup('/machine.slice/systemd-nspawn@db.service/supervisor'), null);
  assert.equal(parseContainerCgroup('/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope'), null);
  assert.deepEqual(parseContainerCgroup('/lxc.payload.c1/init.scope'), { runtime: 'lxc', id: 'c1', name: 'c1', cgroup: '/lxc.payload.c1' });
  assert.equal(parseContainerCgroup('/lxc.monitor.c1'), null);
  assert.deepEqual(parseContainerCgroup(`/default/${ID}`), { runtime: 'containerd', id: ID, cgroup: `/default/${ID}` });
  assert.equal(parseContainerCgroup(`/system.slice/nerdctl-${ID}.scope`)?.runtime, 'containerd');
});

test('the innermost container wins; host paths and look-alikes are no container', () => {
  const nested = `/system.slice/docker-${ID2}.scope/kubepods/besteffort/pod${UID}/${ID}`;
  assert.deepEqual(parseContainerCgroup(nested), { runtime: 'cri', id: ID, cgroup: nested, podUid: UID });
  for (const p of ['/', '/user.slice/user-1000.slice/session-3.scope', '/proctap-12-run', `/docker/${ID.slice(0, 63)}`, `/x/docker-${ID}.service`, '']) {
    assert.equal(parseContainerCgroup(p), null, p);
  }
  assert.equal(unescapeUnitName('a\\x2db\\x5cc'), 'a-b\\c');
});

test('/proc/PID/cgroup: the v2 line first, v1 lines (name=systemd first) where v2 names none', () => {
  const hybridRunc = `9:name=systemd:/libpod_parent/libpod-${ID}\n4:memory:/libpod_parent/libpod-${ID}\n0::/libpod_parent/libpod-${ID}\n`;
  assert.deepEqual(containerOfProcCgroup(hybridRunc), { runtime: 'podman', id: ID, cgroup: `/libpod_parent/libpod-${ID}`, v2: true });
  const v1Only = `9:name=systemd:/docker/${ID}\n4:memory:/docker/${ID}\n0::/\n`;
  assert.deepEqual(containerOfProcCgroup(v1Only), { runtime: 'docker', id: ID, cgroup: `/docker/${ID}`, v2: false });
  assert.equal(containerOfProcCgroup('0::/user.slice\n'), null);
  assert.equal(containerLabel({ id: ID }), ID.slice(0, 12));
  assert.equal(containerLabel({ id: ID, name: 'web' }), 'web');
  assert.equal(containerLabel({ id: 'db' }), 'db');
});

/** A fake root: the runtimes' files and a /proc with a few processes. */
function fakeHost(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-containers-'));
  const write = (file: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text);
  };
  write(`var/lib/docker/containers/${ID}/config.v2.json`, JSON.stringify({ Name: '/web', Config: { Labels: {} } }));
  write('var/lib/containers/storage/overlay-containers/containers.json', JSON.stringify([{ id: ID2, names: ['db'] }]));
  write(`run/containerd/io.containerd.runtime.v2.task/k8s.io/${ID2}/config.json`, JSON.stringify({
    annotations: { 'io.kubernetes.cri.container-name': 'api', 'io.kubernetes.cri.sandbox-name': 'api-7d9f', 'io.kubernetes.cri.sandbox-namespace': 'prod' },
  }));
  write(`run/containers/storage/overlay-containers/${ID}/userdata/config.json`, JSON.stringify({
    annotations: { 'io.kubernetes.container.name': 'cache', 'io.kubernetes.pod.name': 'cache-0', 'io.kubernetes.pod.namespace': 'infra' },
  }));
  write('proc/101/cgroup', `0::/system.slice/docker-${ID}.scope\n`);
  write('proc/102/cgroup', `0::/system.slice/docker-${ID}.scope\n`);
  write('proc/201/cgroup', `0::/machine.slice/libpod-${ID2}.scope\n`);
  write('proc/301/cgroup', '0::/user.slice\n');
  return root;
}

test('names come from each runtime\'s own files', (t) => {
  const root = fakeHost();
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  assert.deepEqual(describeContainer({ runtime: 'docker', id: ID, cgroup: '/' }, root), { runtime: 'docker', id: ID, name: 'web' });
  assert.deepEqual(describeContainer({ runtime: 'podman', id: ID2, cgroup: '/' }, root), { runtime: 'podman', id: ID2, name: 'db' });
  assert.deepEqual(describeContainer({ runtime: 'cri', id: ID2, cgroup: '/', podUid: UID }, root), {
    runtime: 'containerd', id: ID2, podUid: UID, name: 'api', podName: 'api-7d9f', podNamespace: 'prod',
  });
  assert.deepEqual(describeContainer({ runtime: 'cri-o', id: ID, cgroup: '/' }, root), { runtime: 'cri-o', id: ID, name: 'cache', podName: 'cache-0', podNamespace: 'infra' });
  // nothing on file: the id alone
  assert.deepEqual(describeContainer({ runtime: 'containerd', id: ID, cgroup: '/' }, root), { runtime: 'containerd', id: ID });
  const names = new ContainerNames(root);
  assert.equal(names.ofPid(101)?.name, 'web');
  assert.equal(names.ofPid(301), null);
  assert.equal(names.ofPid(999), undefined);
});

test('attach --container finds a container by name, id or unique id prefix', (t) => {
  const root = fakeHost();
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  assert.deepEqual(findContainer('web', root).pids, [101, 102]);
  assert.equal(findContainer(ID2, root).info.name, 'db');
  assert.equal(findContainer(ID2.slice(0, 5), root).info.name, 'db');
  assert.throws(() => findContainer('nosuch', root), (e: Error) => e instanceof ContainerLookupError && /no running container 'nosuch' \(running: web, db\)/.test(e.message));
  // both ids start with a hex digit... only a shared prefix is ambiguous
  fs.writeFileSync(path.join(root, 'proc/301/cgroup'), `0::/docker/${ID.slice(0, 2)}${'0'.repeat(62)}\n`);
  assert.throws(() => findContainer(ID.slice(0, 2), root), /names 2 containers/);
  assert.throws(() => findContainer('a b', root), /not a container id or name/);
});

test('the tracker: a fork inherits, an exec reads /proc, one gone by then takes the matched cgroup\'s or its parent\'s', (t) => {
  const root = fakeHost();
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const tree = new ProcessTree();
  const tracker = new ContainerTracker(new ContainerNames(root));
  tracker.setMatchedCgroup(`/machine.slice/libpod-${ID2}.scope`, root);
  const parent = tree.addRoot(101, 1, 'nginx', [], null);
  tracker.resolve(parent);
  assert.equal(parent.container?.name, 'web');
  const base = { startTime: 0n, tsNs: 1 };
  const fork: TraceRecord = { ...base, type: 'fork', tgid: 150, ppid: 101, nspid: 0, comm: 'nginx' } as TraceRecord;
  tree.onFork(150, 101, 'nginx', 1);
  tracker.observe(fork, tree);
  assert.equal(tree.get(150)?.container?.name, 'web', 'inherited: pid 150 has no /proc entry');
  assert.deepEqual(tracker.eventFields(fork), { container: tree.get(150)!.container });
  const exec = (tgid: number, ppid: number, matched: boolean): TraceRecord => ({ ...base, type: 'exec', tgid, ppid, matched, comm: 'x', filename: '/x', argv: [], argsTruncated: false } as TraceRecord);
  tracker.observe(exec(150, 101, false), tree);
  assert.equal(tree.get(150)?.container?.name, 'web', 'gone at its exec: its parent\'s');
  tree.addRoot(400, 7, 'sh', [], 1);
  tracker.observe(exec(400, 7, true), tree);
  assert.equal(tree.get(400)?.container?.name, 'db', 'matched in the attach --container cgroup');
  tree.addRoot(301, 1, 'bash', [], 1);
  tracker.observe(exec(301, 1, false), tree);
  assert.equal(tree.get(301)?.container, null, 'a host process: read, in no container');
  assert.equal(tracker.eventFields(exec(301, 1, false)), undefined, 'only the record observed last');
});

test('the terminal report marks a process\'s container after its pid', () => {
  const report = emptyReport();
  const traffic = { txBytes: 10, rxBytes: 20, txCalls: 1, rxCalls: 1 };
  const proc = (pid: number, container?: ProcessReport['container']): ProcessReport => ({
    pid, ppid: 1, comm: 'nginx', argv: ['nginx'], startOffsetMs: 0, exitOffsetMs: null, exitCode: null, exitSignal: null,
    tcp: traffic, udp: { ...traffic, txBytes: 0, rxBytes: 0 }, packets: { txPackets: 1, rxPackets: 1, txBytes: 60, rxBytes: 60 }, ...(container ? { container } : {}),
  });
  report.processes = [proc(4242, { runtime: 'podman', id: ID, name: 'web' }), proc(4343, { runtime: 'docker', id: ID2 }), proc(4444)];
  const text = renderReport(report, { color: false, width: 160 });
  assert.match(text, /4242 @web /);
  assert.match(text, new RegExp(`4343 @${ID2.slice(0, 12)} `));
  assert.match(text, /4444 +nginx/);
});
