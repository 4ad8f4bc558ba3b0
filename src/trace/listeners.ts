// SPDX-License-Identifier: MIT
// Listening sockets that attach targets opened before the attach. A connection accepted from a listener
// created while traced inherits the listener's socket storage (BPF_F_CLONE), so the kernel knows it from
// its SYN on; one of these has no storage to inherit. The kernel is told where each listens (netns, port,
// address): the children it accepts get storage at SYN_RECV, and so their true start and passive role.
import type { ProcNetSocket } from '../proc/procfs';
import type { ConnectionTracker } from '../model/connections';
import { TCP_STATE } from '../model/connections';
import type { Probes } from './probes';

export class ListenerRegistry {
  private readonly known = new Set<string>();

  constructor(
    private readonly probes: Pick<Probes, 'addListener'>,
    private readonly connections: Pick<ConnectionTracker, 'noteListener'>,
  ) {}

  /** The listeners among a process's sockets; a socket shared by several processes (nginx's master and
   *  workers) is registered once, for the first of them (parents come first). */
  register(pid: number, netns: number | null, sockets: ProcNetSocket[]): void {
    for (const s of sockets) {
      if (s.proto !== 'tcp' || s.state !== TCP_STATE.LISTEN) continue;
      this.connections.noteListener(s.localPort);
      const id = `${netns}/${s.localPort}/${Buffer.from(s.localBytes).toString('hex')}`;
      if (netns === null || this.known.has(id)) continue;
      this.known.add(id);
      this.probes.addListener({ netns, port: s.localPort, addr: s.localBytes }, pid);
    }
  }
}
