// SPDX-License-Identifier: MIT
// Bounded cardinality for cumulative counters: the N keys with the most bytes so far get a series of
// their own, everything else is one "other" series per group, and the sum over a group always equals
// the group's exact total. Pure: values in, series out.
//
// What makes it safe for Prometheus counters, whatever the source does between two scrapes:
// - no series ever goes down: a series only ever receives increments;
// - the increments handed out in one update never exceed the growth of the group's total, so "other"
//   (total minus the series) never goes down either;
// - a key that drops out of the N hands its series' value to "other" and never gets a series again
//   (its series would have to restart lower); a key that enters counts from the update it entered:
//   bytes it had moved before were already in "other". A key that has had its series since the source
//   first listed it (the usual case for a top talker) therefore equals the source's figure for it.
// - labels are those the key had when it entered; one label set is never given to two keys (a pid
//   reused with the same command keeps counting in "other").

export interface TopNEntry {
  key: string;
  /** The "other" series (and total) this key is part of, e.g. the protocol. */
  group: string;
  /** Ranking weight: bytes so far. */
  weight: number;
  /** Cumulative values, one per column (bytes and calls per direction...). */
  values: number[];
  labels: Record<string, string>;
}

export interface TopNSeries {
  key: string;
  group: string;
  labels: Record<string, string>;
  values: number[];
}

export interface TopNResult {
  series: TopNSeries[];
  /** Per group: total minus its series. */
  other: Map<string, number[]>;
  /** Series dropped by this update (their values went to "other"): the exporter removes them. */
  removed: TopNSeries[];
}

interface Member {
  group: string;
  labels: Record<string, string>;
  labelKey: string;
  exported: number[];
  weight: number;
}

const labelKeyOf = (labels: Record<string, string>) => JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));

export class TopN {
  private readonly lastSeen = new Map<string, number[]>();
  private readonly members = new Map<string, Member>();
  /** Keys that had a series and lost it: never promoted again. */
  private readonly retired = new Set<string>();
  /** Every label set ever exported, and the key it belongs to. */
  private readonly labelOwners = new Map<string, string>();
  private readonly other = new Map<string, number[]>();
  private readonly totals = new Map<string, number[]>();

  /** `cap` keys get series; `width` columns per key; past `maxRemembered` retired keys and label sets,
   *  no new key is promoted (memory stays bounded on a host that churns through keys for days). */
  constructor(
    readonly cap: number,
    readonly width: number,
    private readonly maxRemembered = Math.max(1000, 100 * cap),
  ) {}

  update(entries: TopNEntry[], groupTotals: Map<string, number[]>): TopNResult {
    const zero = () => new Array<number>(this.width).fill(0);
    // growth since the last update, per listed key (a key listed for the first time: all of it)
    const growth = new Map<string, number[]>();
    const listed = new Map<string, TopNEntry>();
    for (const e of entries) {
      listed.set(e.key, e);
      const before = this.lastSeen.get(e.key);
      growth.set(e.key, e.values.map((v, i) => Math.max(0, v - (before?.[i] ?? 0))));
      this.lastSeen.set(e.key, before ? e.values.map((v, i) => Math.max(v, before[i])) : [...e.values]);
    }
    // keys the source no longer lists (folded): members keep their series, frozen; the rest are forgotten
    for (const key of this.lastSeen.keys()) if (!listed.has(key) && !this.members.has(key)) this.lastSeen.delete(key);

    // the room each group has: its total's growth (a total never goes down)
    const free = new Map<string, number[]>();
    for (const [group, total] of groupTotals) {
      const before = this.totals.get(group) ?? zero();
      const now = total.map((v, i) => Math.max(v, before[i]));
      this.totals.set(group, now);
      free.set(group, now.map((v, i) => v - before[i]));
      if (!this.other.has(group)) this.other.set(group, zero());
    }
    const take = (group: string, wanted: number[]): number[] => {
      const room = free.get(group);
      if (!room) return zero();
      return wanted.map((w, i) => {
        const got = Math.min(w, room[i]);
        room[i] -= got;
        return got;
      });
    };

    // who should have a series: the largest weights, sitting members first among equals
    const ranked = entries
      .filter((e) => this.members.has(e.key) || this.eligible(e))
      .sort((a, b) => b.weight - a.weight || Number(this.members.has(b.key)) - Number(this.members.has(a.key)) || a.key.localeCompare(b.key));
    const frozen = [...this.members.entries()].filter(([key]) => !listed.has(key)).map(([key, m]) => ({ key, weight: m.weight }));
    const wanted = new Set([...ranked.map((e) => ({ key: e.key, weight: e.weight })), ...frozen].sort((a, b) => b.weight - a.weight).slice(0, this.cap).map((x) => x.key));

    const removed: TopNSeries[] = [];
    for (const [key, m] of this.members) {
      if (wanted.has(key)) continue;
      this.members.delete(key);
      this.retired.add(key);
      const other = this.other.get(m.group) ?? zero();
      this.other.set(m.group, other.map((v, i) => v + m.exported[i]));
      removed.push({ key, group: m.group, labels: m.labels, values: m.exported });
    }
    // sitting members first (their growth is the source's), then newcomers, in rank order
    for (const e of ranked) {
      const m = this.members.get(e.key);
      if (!m) continue;
      const inc = take(m.group, growth.get(e.key)!);
      m.exported = m.exported.map((v, i) => v + inc[i]);
      m.weight = e.weight;
      if (!this.other.has(m.group)) this.other.set(m.group, zero());
    }
    for (const e of ranked) {
      if (this.members.has(e.key) || !wanted.has(e.key)) continue;
      const labelKey = labelKeyOf(e.labels);
      this.labelOwners.set(labelKey, e.key);
      this.members.set(e.key, { group: e.group, labels: { ...e.labels }, labelKey, exported: take(e.group, growth.get(e.key)!), weight: e.weight });
    }
    // what is left of each group's growth is "other"'s
    for (const [group, room] of free) {
      const other = this.other.get(group) ?? zero();
      this.other.set(group, other.map((v, i) => v + room[i]));
    }
    const series = [...this.members.entries()].map(([key, m]) => ({ key, group: m.group, labels: m.labels, values: [...m.exported] }));
    return { series, other: new Map([...this.other].map(([g, v]) => [g, [...v]])), removed };
  }

  private eligible(e: TopNEntry): boolean {
    if (this.retired.has(e.key)) return false;
    const owner = this.labelOwners.get(labelKeyOf(e.labels));
    if (owner !== undefined && owner !== e.key) return false;
    return this.retired.size + this.labelOwners.size < this.maxRemembered || owner === e.key;
  }
}
