// SPDX-License-Identifier: MIT
// The layers of docs/architecture.md, checked on the sources: a module imports only from its own folder
// or from a layer below it, so a record goes up once (kernel -> model -> report -> renderers) and never
// comes back down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const SRC = path.resolve(__dirname, '../../../src');

/** Bottom to top; folders of one rank may not import each other. */
export const LAYERS: Record<string, number> = {
  util: 0, schema: 1, native: 2, kernel: 3, proc: 4, isolate: 5, tls: 5, l7: 6, model: 7, analysis: 8, report: 9, render: 10, pcap: 10, metrics: 10, trace: 11, cli: 12,
};

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]);
}

test('every source folder has a layer', () => {
  const folders = fs.readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  assert.deepEqual(folders.filter((f) => !(f in LAYERS)), []);
});

function violations(root: string): string[] {
  const found: string[] = [];
  for (const file of sources(root)) {
    const from = path.relative(root, file).split(path.sep)[0];
    for (const spec of importsOf(file)) {
      const target = path.relative(root, path.resolve(path.dirname(file), spec)).split(path.sep)[0];
      if (target === from) continue;
      if (!(target in LAYERS) || LAYERS[target] >= LAYERS[from]) found.push(`${path.relative(root, file)} imports ${spec} (${from} ${LAYERS[from]} -> ${target} ${LAYERS[target]})`);
    }
  }
  return found;
}

test('no module imports from its own rank in another folder or from a layer above it', () => {
  assert.deepEqual(violations(SRC), []);
});

test('the check finds an upward import and an import across one rank', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-layers-'));
  try {
    for (const d of ['model', 'report', 'render', 'pcap']) fs.mkdirSync(path.join(root, d));
    fs.writeFileSync(path.join(root, 'model', 'x.ts'), "import { y } from '../report/y';\nimport { z } from './z';\n");
    fs.writeFileSync(path.join(root, 'render', 'a.ts'), "import type { B } from '../pcap/b';\nimport { m } from '../model/x';\n");
    assert.deepEqual(violations(root), ['model/x.ts imports ../report/y (model 7 -> report 9)', 'render/a.ts imports ../pcap/b (render 10 -> pcap 10)']);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
