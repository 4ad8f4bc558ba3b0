// SPDX-License-Identifier: MIT
// `make demo`: loopback echo servers (untraced), then `proctap run` on the shipped workload: a parent,
// two children and a grandchild talking TCP over IPv4 and IPv6 and UDP. Prints the report; the JSON
// goes to build/demo-report.json.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NETLOAD, PROCTAP, ROOT, startServers, tempDir } from '../e2e/harness';

async function main(): Promise<number> {
  const servers = await startServers();
  const dir = tempDir();
  fs.chmodSync(dir, 0o777);
  const jsonPath = path.join(ROOT, 'build', 'demo-report.json');
  // The demo's own report file: each demo run replaces the last one.
  const argv = ['run', '--force', '--json', jsonPath, '--', 'python3', NETLOAD, 'tree', '--out', path.join(dir, 'counts.jsonl'), '--port', String(servers.port)];
  process.stderr.write(`$ proctap ${argv.join(' ')}\n`);
  const code = await new Promise<number>((resolve) => {
    spawn(PROCTAP, argv, { stdio: 'inherit' }).on('close', (c) => resolve(c ?? 1));
  });
  await servers.close();
  const countsFile = path.join(dir, 'counts.jsonl');
  if (!fs.existsSync(countsFile)) {
    fs.rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`\nproctap exited with ${code} before the workload ran\n`);
    return code || 1;
  }
  const counts = fs.readFileSync(countsFile, 'utf8').trim();
  process.stderr.write(`\nwhat the workload counted itself (one line per process):\n${counts}\n\nJSON report: ${jsonPath}\n`);
  fs.rmSync(dir, { recursive: true, force: true });
  return code;
}

main().then((code) => (process.exitCode = code));
