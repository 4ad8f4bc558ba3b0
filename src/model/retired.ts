// SPDX-License-Identifier: MIT
// The traffic of every flow that left the live tables (retired: kept one by one or folded), summed per
// protocol, per owner process still in the tree, and per service endpoint. These only grow, so a reader
// that runs while the trace goes on (--metrics) adds them to the live flows and gets totals that never
// go back when the model folds. Bounded: owners leave with their process; at most MAX_SERVICES service
// endpoints, the rest under one "*" address per protocol, direction and port.
import type { FlowCounters } from '../kernel/records';
import { serviceKey, type ServiceEndpoint } from './service';

export const MAX_RETIRED_SERVICES = 1024;

const zero = (): FlowCounters => ({ txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });

function add(into: FlowCounters, c: FlowCounters): void {
  into.txBytes += c.txBytes;
  into.rxBytes += c.rxBytes;
  into.txCalls += c.txCalls;
  into.rxCalls += c.rxCalls;
}

export class RetiredTraffic {
  readonly tcp = zero();
  readonly udp = zero();
  /** By processId of the owner, while its process is in the tree. */
  readonly byOwner = new Map<string, { tcp: FlowCounters; udp: FlowCounters }>();
  readonly byService = new Map<string, { service: ServiceEndpoint; counters: FlowCounters }>();

  add(owner: string, service: ServiceEndpoint, counters: FlowCounters): void {
    const proto = service.proto;
    add(this[proto], counters);
    let o = this.byOwner.get(owner);
    if (!o) this.byOwner.set(owner, (o = { tcp: zero(), udp: zero() }));
    add(o[proto], counters);
    let key = serviceKey(service);
    if (!this.byService.has(key) && this.byService.size >= MAX_RETIRED_SERVICES) {
      service = { ...service, remoteAddr: '*' };
      key = serviceKey(service);
    }
    let s = this.byService.get(key);
    if (!s) this.byService.set(key, (s = { service, counters: zero() }));
    add(s.counters, counters);
  }

  /** The owner's process left the tree (folded): its bytes stay in the totals and the services only. */
  dropOwner(owner: string): void {
    this.byOwner.delete(owner);
  }
}
