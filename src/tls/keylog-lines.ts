// SPDX-License-Identifier: MIT
// The NSS key log format (SSLKEYLOGFILE), pure: bytes from any number of writers, in any chunking, in;
// complete, well-formed lines out. Programs write one line per write() (curl, Python, GnuTLS and Node
// do), and a pipe keeps writes of up to PIPE_BUF bytes whole, so lines of concurrent writers do not mix.

/** LABEL <client random: 32 bytes hex> <secret: 16..128 bytes hex> */
const LINE = /^[A-Z][A-Z0-9_]{2,63} [0-9a-fA-F]{64} [0-9a-fA-F]{32,256}$/;
/** A partial line longer than this is not a key log line: dropped. */
const MAX_LINE = 1024;

export class KeyLogLines {
  private pending = '';
  /** Lines that were not key log lines (comments and blank lines are not counted). */
  rejected = 0;
  accepted = 0;

  /** Feeds bytes; returns the complete well-formed lines they finished, each ending in "\n". */
  push(chunk: Uint8Array): string {
    const text = this.pending + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('latin1');
    const lines = text.split('\n');
    this.pending = lines.pop() ?? '';
    if (this.pending.length > MAX_LINE) {
      this.pending = '';
      this.rejected++;
    }
    let out = '';
    for (const raw of lines) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line === '' || line.startsWith('#')) continue;
      if (LINE.test(line)) {
        out += `${line}\n`;
        this.accepted++;
      } else {
        this.rejected++;
      }
    }
    return out;
  }
}

/** The command's environment with the key log channel: SSLKEYLOGFILE (curl, Python, GnuTLS, Firefox,
 *  Chromium) and Node's --tls-keylog through NODE_OPTIONS (after any options the user gave). */
export function keyLogEnvironment(env: NodeJS.ProcessEnv, channelPath: string): NodeJS.ProcessEnv {
  const nodeOptions = env.NODE_OPTIONS ? `${env.NODE_OPTIONS} ` : '';
  return { ...env, SSLKEYLOGFILE: channelPath, NODE_OPTIONS: `${nodeOptions}--tls-keylog=${channelPath}` };
}
