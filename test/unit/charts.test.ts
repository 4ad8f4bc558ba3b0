// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import {
  CHART_FILES,
  CHART_HEIGHT,
  CHART_MAX_CONNECTIONS,
  CHART_MAX_ENDPOINTS,
  CHART_WIDTH,
  byteStep,
  connectionChart,
  endpointChart,
  messageSizeChart,
  renderCharts,
  sizeBucketLabel,
} from '../../src/render/charts';
import { emptyReport, syntheticReport } from './synthreport';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Width and height from the IHDR chunk, and the inflated image data (all IDAT chunks). */
function readPng(buf: Buffer): { width: number; height: number; pixels: Buffer } {
  assert.ok(buf.subarray(0, 8).equals(PNG_SIGNATURE), 'PNG signature');
  assert.equal(buf.toString('latin1', 12, 16), 'IHDR');
  const idat: Buffer[] = [];
  for (let off = 8; off < buf.length; ) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    if (type === 'IDAT') idat.push(buf.subarray(off + 8, off + 8 + len));
    off += 12 + len;
  }
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20), pixels: inflateSync(Buffer.concat(idat)) };
}

test('renderCharts writes four PNGs of the chart size; data changes the pixels', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'proctap-charts-'));
  try {
    const full = await renderCharts(syntheticReport(), path.join(dir, 'full'));
    const empty = await renderCharts(emptyReport(), path.join(dir, 'empty'));
    assert.deepEqual(full.map((f) => path.basename(f)), Object.values(CHART_FILES));
    assert.deepEqual(empty.map((f) => path.basename(f)), Object.values(CHART_FILES));
    for (let i = 0; i < full.length; i++) {
      const a = readPng(await readFile(full[i]));
      const b = readPng(await readFile(empty[i]));
      assert.equal(a.width, CHART_WIDTH, full[i]);
      assert.equal(a.height, CHART_HEIGHT, full[i]);
      assert.equal(b.width, CHART_WIDTH);
      assert.equal(b.height, CHART_HEIGHT);
      assert.ok((await readFile(full[i])).length > 10_000, `${full[i]} is only ${(await readFile(full[i])).length} bytes`);
      // RGBA rows of 1000 pixels plus a filter byte each: the whole image is there.
      assert.equal(a.pixels.length, CHART_HEIGHT * (1 + 4 * CHART_WIDTH));
      let differ = 0;
      for (let k = 0; k < a.pixels.length; k++) if (a.pixels[k] !== b.pixels[k]) differ++;
      assert.ok(differ > 5000, `${path.basename(full[i])}: only ${differ} bytes differ from the empty chart`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('size bucket labels: "0 B", "≤1 B" … "≤1023 B", "≤2 KiB" … "≤64 KiB", open last bucket', () => {
  assert.equal(sizeBucketLabel(0), '0 B');
  assert.equal(sizeBucketLabel(1), '≤1 B');
  assert.equal(sizeBucketLabel(2), '≤3 B');
  assert.equal(sizeBucketLabel(10), '≤1023 B');
  assert.equal(sizeBucketLabel(11), '≤2 KiB');
  assert.equal(sizeBucketLabel(16), '≤64 KiB');
  assert.equal(sizeBucketLabel(21), '≤2 MiB');
  assert.equal(sizeBucketLabel(23, true), '≥4 MiB');
});

test('byte axis steps are 1/2/5 of a binary unit', () => {
  assert.equal(byteStep(0), 1);
  assert.equal(byteStep(600), 100);
  assert.equal(byteStep(5 * 1024 * 1024), 1024 * 1024);
  assert.equal(byteStep(20 * 1024 * 1024), 5 * 1024 * 1024);
});

test('chart data: message-size shares per direction, top endpoints, capped connection timeline', () => {
  const r = syntheticReport();
  const sizes = messageSizeChart(r).data.datasets;
  for (const d of sizes) assert.ok(Math.abs((d.data as number[]).reduce((a, b) => a + b, 0) - 100) < 1e-9, d.label);
  const many = emptyReport();
  many.endpoints = Array.from({ length: 40 }, (_, i) => ({
    proto: 'tcp' as const, remoteAddr: `10.0.0.${i}`, remotePort: 80, txBytes: i * 100, rxBytes: 5, txCalls: 1, rxCalls: 1, connections: 1, pids: [1],
  }));
  const ep = endpointChart(many);
  assert.equal(ep.data.labels!.length, CHART_MAX_ENDPOINTS);
  assert.equal(ep.data.labels![0], 'tcp 10.0.0.39:80');
  many.connections = Array.from({ length: 80 }, (_, i) => ({ ...r.connections[0], startOffsetMs: 80 - i }));
  const cc = connectionChart(many);
  assert.equal(cc.data.labels!.length, CHART_MAX_CONNECTIONS);
  const bars = cc.data.datasets.flatMap((d) => d.data as Array<[number, number] | null>).filter((x) => x !== null) as Array<[number, number]>;
  assert.equal(bars.length, CHART_MAX_CONNECTIONS);
  assert.equal(bars[0][0], 0.001); // earliest first, in seconds
  for (const [s, e] of bars) assert.ok(e > s);
});
