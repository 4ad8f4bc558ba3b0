// SPDX-License-Identifier: MIT
// Started by bin/proctap, which sets NODE_* and OPENSSL_* variables aside before node starts.
'use strict';
const path = require('node:path');
const unsafe = Object.keys(process.env).filter((k) => /^(NODE_|OPENSSL_)/.test(k));
if (unsafe.length > 0) {
  process.stderr.write(`proctap: ${unsafe.join(', ')} set for the privileged node process: start proctap with bin/proctap, which sets them aside\n`);
  process.exit(125);
}
let cli;
try {
  cli = require(path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js'));
} catch (err) {
  process.stderr.write("proctap: not built: run 'make build' in " + path.resolve(__dirname, '..') + '\n');
  process.exit(125);
}
cli.main(process.argv).then((code) => {
  process.exitCode = code;
  // Everything is closed by now; this only guards against a stray handle keeping the tracer alive.
  setTimeout(() => process.exit(code), 2000).unref();
});
