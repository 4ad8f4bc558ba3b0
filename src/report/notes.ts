// SPDX-License-Identifier: MIT
// What a report says it could not see, as notes. Pure: facts of the finished trace in, sentences out.
import type { Flow } from '../model/flows';
import type { ProcessNode } from '../model/tree';
import type { LostCounters } from '../schema/report';

export interface TraceFacts {
  flows: Flow[];
  processes: ProcessNode[];
  lost: LostCounters;
  /** Why tcp:tcp_retransmit_skb could not be attached, when it could not. */
  retransmitsUnavailable: string | null;
  /** DNS responses longer than the kernel copies. */
  dnsResponsesCut: number;
  /** Why the proc connector could not be opened, when it could not (proctap inside a network namespace). */
  connectorUnavailable?: string | null;
}

export function traceNotes(facts: TraceFacts): string[] {
  const notes: string[] = [];
  if (facts.flows.some((f) => f.key.remoteAddr === '*'))
    notes.push('Some UDP traffic has remote "*": recv() without an address on an unconnected socket does not say who sent it.');
  if (facts.lost.records > 0)
    notes.push('Ring-buffer records were lost: byte and call totals are still exact (read from kernel counters); time resolution and process details may be incomplete.');
  if (facts.retransmitsUnavailable !== null)
    notes.push(`TCP retransmits not counted: tcp:tcp_retransmit_skb could not be attached (${facts.retransmitsUnavailable}).`);
  if (facts.dnsResponsesCut > 0)
    notes.push(`${facts.dnsResponsesCut} DNS response(s) were longer than the kernel copies (1024 bytes): names in their later answers may be missing.`);
  if (facts.processes.some((p) => p.source === 'flow'))
    notes.push('Some processes are known only from their traffic (their fork record was lost).');
  if (facts.connectorUnavailable)
    notes.push(`No proc connector (it exists only in the initial network namespace, which proctap could not reach: ${facts.connectorUnavailable}): process events come from kernel records only, so a lost fork or exit record is not made up for.`);
  if (facts.lost.procConnectorOverflows > 0)
    notes.push('The proc connector overflowed: the process tree was rebuilt from the live processes (those that started and ended unseen in between may be missing).');
  return notes;
}
