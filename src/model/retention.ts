// SPDX-License-Identifier: MIT
// Which finished items (closed sockets, exited processes) are kept one by one: the newest, the largest
// and the failed ones, each pool up to its cap. An item stays while any pool holds it; one that no pool
// holds any more is handed to `onFold` (the caller adds it to its aggregates). Memory is bounded by
// the sum of the caps, whatever the number of items offered. Pure: no clock, no I/O.

export interface RetentionCaps {
  /** The most recently finished. */
  newest: number;
  /** The largest by score (bytes moved). */
  largest: number;
  /** The most recently finished of those that failed (refused, reset, timed out; exit code not 0). */
  failed: number;
}

interface Held<T> {
  item: T;
  score: number;
  /** Pools holding the item. */
  refs: number;
}

/** Min-heap on score, ties: the earlier offered goes first. */
class MinHeap<T> {
  private readonly a: Array<Held<T> & { seq: number }> = [];

  get size(): number {
    return this.a.length;
  }

  peek(): (Held<T> & { seq: number }) | undefined {
    return this.a[0];
  }

  private less(i: number, j: number): boolean {
    const x = this.a[i];
    const y = this.a[j];
    return x.score < y.score || (x.score === y.score && x.seq < y.seq);
  }

  push(h: Held<T> & { seq: number }): void {
    const a = this.a;
    a.push(h);
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }

  pop(): (Held<T> & { seq: number }) | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(l, m)) m = l;
        if (r < a.length && this.less(r, m)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }

  held(): Array<Held<T> & { seq: number }> {
    return [...this.a];
  }
}

/** A FIFO of at most `cap` entries over a ring, so that dropping the oldest is O(1). */
class Ring<T> {
  private readonly slots: Array<T | undefined>;
  private head = 0;
  private count = 0;

  constructor(private readonly cap: number) {
    this.slots = new Array<T | undefined>(Math.max(0, cap));
  }

  /** Adds `x`; returns the entry it pushed out, if the ring was full. */
  push(x: T): T | undefined {
    if (this.cap === 0) return x;
    if (this.count < this.cap) {
      this.slots[(this.head + this.count++) % this.cap] = x;
      return undefined;
    }
    const out = this.slots[this.head];
    this.slots[this.head] = x;
    this.head = (this.head + 1) % this.cap;
    return out;
  }

  values(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.slots[(this.head + i) % this.cap] as T);
    return out;
  }
}

export class Retention<T> {
  private readonly newest: Ring<Held<T> & { seq: number }>;
  private readonly failed: Ring<Held<T> & { seq: number }>;
  private readonly largest = new MinHeap<T>();
  private seq = 0;
  /** Items offered, and of them folded (no pool kept them). */
  offered = 0;
  folded = 0;

  constructor(
    readonly caps: RetentionCaps,
    private readonly onFold: (item: T) => void,
  ) {
    this.newest = new Ring(caps.newest);
    this.failed = new Ring(caps.failed);
  }

  private release(h: Held<T> | undefined): void {
    if (h && --h.refs === 0) {
      this.folded++;
      this.onFold(h.item);
    }
  }

  /** A finished item: kept by the pools it qualifies for, or folded at once. */
  offer(item: T, score: number, failed: boolean): void {
    this.offered++;
    const held: Held<T> & { seq: number } = { item, score, refs: 1, seq: this.seq++ };
    // The reference taken above is dropped at the end: an item no pool took is folded there.
    if (this.caps.newest > 0) {
      held.refs++;
      this.release(this.newest.push(held));
    }
    if (failed && this.caps.failed > 0) {
      held.refs++;
      this.release(this.failed.push(held));
    }
    if (this.caps.largest > 0 && score > 0) {
      if (this.largest.size < this.caps.largest) {
        held.refs++;
        this.largest.push(held);
      } else {
        const min = this.largest.peek()!;
        if (score > min.score) {
          held.refs++;
          this.largest.pop();
          this.largest.push(held);
          this.release(min);
        }
      }
    }
    this.release(held);
  }

  /** The items kept, each once, oldest offered first. */
  kept(): T[] {
    const seen = new Set<Held<T> & { seq: number }>([...this.newest.values(), ...this.failed.values(), ...this.largest.held()]);
    return [...seen].sort((a, b) => a.seq - b.seq).map((h) => h.item);
  }

  get size(): number {
    return this.offered - this.folded;
  }
}
