// SPDX-License-Identifier: MIT
// The kernel's log2 message-size histograms, summed as flows are read for the last time: per pid,
// protocol and direction, so no flow has to keep its own. A folded process's rows are dropped (the
// sums over every process are kept apart, so they stay whole).

export interface SizeRow {
  pid: number;
  proto: 'tcp' | 'udp';
  direction: 'tx' | 'rx';
  buckets: number[];
}

export class SizeTable {
  private readonly rows = new Map<string, SizeRow>();
  /** Sums over every process, folded ones included. */
  readonly total: Record<'tcp' | 'udp', Record<'tx' | 'rx', number[]>> = { tcp: { tx: [], rx: [] }, udp: { tx: [], rx: [] } };

  add(pid: number, proto: 'tcp' | 'udp', sizes: { tx: number[]; rx: number[] }): void {
    for (const direction of ['tx', 'rx'] as const) {
      const id = `${pid}/${proto}/${direction}`;
      let row = this.rows.get(id);
      if (!row) this.rows.set(id, (row = { pid, proto, direction, buckets: sizes[direction].map(() => 0) }));
      const total = this.total[proto][direction];
      sizes[direction].forEach((n, i) => {
        row!.buckets[i] += n;
        total[i] = (total[i] ?? 0) + n;
      });
    }
  }

  dropProcess(pid: number): void {
    for (const proto of ['tcp', 'udp'] as const) for (const d of ['tx', 'rx'] as const) this.rows.delete(`${pid}/${proto}/${d}`);
  }

  list(): SizeRow[] {
    return [...this.rows.values()];
  }
}
