// SPDX-License-Identifier: MIT
// Test helper: ring-buffer batches as the addon hands them to JS.

/** Frames records the way the addon does: [u32 len][u32 0][bytes][pad to 8]. */
export function frameRecords(records: Buffer[]): ArrayBuffer {
  const parts: Buffer[] = [];
  for (const r of records) {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(r.length);
    parts.push(head, r, Buffer.alloc((8 - (r.length % 8)) % 8));
  }
  const all = Buffer.concat(parts);
  return all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
}
