// SPDX-License-Identifier: MIT
// The harness's loopback servers in a process of their own, for a network namespace the test made:
// `ip netns exec NS node ns-servers.js --serve` prints "ready PORT" and serves until stdin closes.
// (Without --serve it does nothing: the test runner may load every file under test/.)
import { startServers } from './harness';

if (process.argv.includes('--serve')) {
  void startServers().then((servers) => {
    process.stdout.write(`ready ${servers.port}\n`);
    process.stdin.on('end', () => void servers.close().then(() => process.exit(0)));
    process.stdin.resume();
  });
}
