// SPDX-License-Identifier: MIT
// Redis RESP2/RESP3: commands (arrays of bulk strings, or inline lines) and their replies, matched in
// order (pipelining), named as INFO commandstats names them ("get", "config|get"). Bulk strings are
// skipped by length, so values past the copy limit still count. Out-of-band data is not a reply:
// RESP3 pushes ('>'), attributes ('|'), and pub/sub messages once subscribed. A gap where a type byte
// or a length should be loses the framing (and with it the order of replies): decoding stops there.
import { finish, newDraft, note, other, printable, requestDirection, type ExchangeDraft, type ProtocolContext, type ProtocolDecoder } from './protocol';
import { latin1 } from './stream';
import type { Direction, RedisDetail, Role } from './types';
import type { Match } from './http1';

const LF = 0x0a;
const MAX_LINE = 64 * 1024;
const KEEP_ARG = 64;

/** Commands redis counts per subcommand in INFO commandstats ("cmdstat_config|get"): the commands
 *  that have subcommands in redis 7's command table (src/commands/*.json with "subcommands"). */
export const CONTAINER_COMMANDS = new Set([
  'acl', 'client', 'cluster', 'command', 'config', 'function', 'latency', 'memory', 'module', 'object', 'pubsub', 'script', 'slowlog', 'xgroup', 'xinfo',
]);
/** Commands a person types inline (telnet, redis-cli -x ...) that the detection accepts as a first line. */
const INLINE_COMMANDS = new Set([
  'ping', 'info', 'auth', 'hello', 'select', 'echo', 'get', 'set', 'del', 'exists', 'keys', 'incr', 'decr', 'quit', 'flushall', 'flushdb', 'config', 'client', 'dbsize', 'monitor', 'subscribe', 'time', 'type', 'ttl', 'expire', 'mget', 'mset', 'lpush', 'rpush', 'lpop', 'rpop', 'lrange', 'sadd', 'smembers', 'hget', 'hset', 'hgetall', 'zadd', 'zrange', 'scan', 'command', 'multi', 'exec', 'discard', 'watch',
]);
const SUBSCRIBE = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe']);
const PUBSUB_MESSAGES = new Set(['message', 'pmessage', 'smessage']);

/** The commandstats name of a command given its first two arguments. */
export function redisCommandName(args: string[]): string | null {
  if (args.length === 0) return null;
  const cmd = args[0].toLowerCase();
  if (CONTAINER_COMMANDS.has(cmd) && args.length > 1) return `${cmd}|${args[1].toLowerCase()}`;
  return cmd;
}

export const isAlpha = (b: number) => (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);

/** First bytes of a Redis connection: a command array ("*3\r\n$3\r\nSET"), an inline command line;
 *  mid-stream also a run of complete replies filling the bytes. */
export function detectRedis(b: Uint8Array, cut: boolean, midStream: boolean): { match: Match; sender?: Role } {
  if (b.length === 0) return { match: 'more' };
  if (b[0] === 0x2a) {
    const text = latin1(b, 0, Math.min(b.length, 64));
    const m = /^\*([1-9]\d{0,6})\r\n\$([1-9]\d{0,8})\r\n/.exec(text);
    if (m) {
      const want = Math.min(Number(m[2]), 16);
      const name = text.slice(m[0].length, m[0].length + want);
      if (!/^[A-Za-z][A-Za-z0-9._|-]*$/.test(name) && name.length > 0) return { match: 'no' };
      if (name.length === want) return { match: 'yes', sender: 'client' };
      return cut ? { match: 'no' } : { match: 'more' };
    }
    if (!cut && /^\*(\d{0,7}(\r(\n(\$(\d{0,9}(\r)?)?)?)?)?)?$/.test(text)) return { match: 'more' };
    return { match: 'no' };
  }
  if (isAlpha(b[0])) {
    const lf = b.indexOf(LF);
    if (lf < 0) return b.length < 256 && !cut ? { match: 'more' } : { match: 'no' };
    const line = latin1(b, 0, lf).replace(/\r$/, '');
    const words = line.trim().split(/\s+/);
    if (INLINE_COMMANDS.has(words[0].toLowerCase()) && !/ HTTP\/\d/.test(line) && /^[\x20-\x7e]*$/.test(line)) return { match: 'yes', sender: 'client' };
    return { match: 'no' };
  }
  if (midStream && '+-:$*_,#!=(%~>|'.includes(String.fromCharCode(b[0]))) {
    if (cut) return { match: 'no' };
    const p = new RespParser();
    const used = p.parseAll(b);
    return used === b.length && p.values > 0 ? { match: 'yes', sender: 'server' } : { match: 'no' };
  }
  return { match: 'no' };
}

/** A top-level RESP value as it goes by: its type, and the first bytes of what matters. */
interface Value {
  type: string;
  /** Arrays: the first KEEP_ARG bytes of their first three elements (commands: name, subcommand, its argument). */
  args: string[];
  /** Errors: the message's first word. */
  error: string | null;
  bytes: number;
  startTs: number;
  cut: boolean;
}

/**
 * An incremental RESP value reader over contiguous bytes (used alone by detection) or a stream
 * (pump). Aggregates are a stack of remaining element counts; bulk payloads are skipped by length.
 */
class RespParser {
  values = 0;
  private stack: number[] = [];
  private bulk = -1;
  private cur: Value | null = null;
  private keepArg = false;

  /** Parses complete values from contiguous bytes; returns the bytes used by them (detection). */
  parseAll(b: Uint8Array): number {
    let at = 0;
    let used = 0;
    while (at < b.length) {
      if (this.bulk >= 0) {
        if (at + this.bulk > b.length) return used;
        at += this.bulk;
        this.bulk = -1;
        if (b[at - 2] !== 0x0d || b[at - 1] !== LF) return used;
        if (this.elementDone()) used = at;
        continue;
      }
      const lf = b.indexOf(LF, at);
      if (lf < 0 || b[lf - 1] !== 0x0d) return used;
      const r = this.line(latin1(b, at, lf - 1));
      at = lf + 1;
      if (r === 'bad') return used;
      if (r === 'value') used = at;
    }
    return used;
  }

  /** One type line (no CRLF). 'value': a top-level value completed; 'bad': not RESP. */
  line(text: string): 'value' | 'more' | 'bad' {
    const type = text[0];
    const rest = text.slice(1);
    if (this.stack.length === 0) this.cur = { type, args: [], error: null, bytes: 0, startTs: 0, cut: false };
    switch (type) {
      case '+': case ':': case ',': case '#': case '_': case '(':
        if (this.keepArg) this.keep(rest);
        return this.elementDone() ? 'value' : 'more';
      case '-':
        if (this.stack.length === 0) this.cur!.error = rest.split(' ')[0] || 'ERR';
        return this.elementDone() ? 'value' : 'more';
      case '$': case '!': case '=': {
        if (!/^-?\d{1,12}$/.test(rest)) return 'bad';
        const n = Number(rest);
        if (n < 0) return n === -1 ? (this.elementDone() ? 'value' : 'more') : 'bad';
        if (type === '!' && this.stack.length === 0) this.cur!.error = 'ERR';
        this.keepArg = this.cur !== null && (this.stack.length === 1 && this.cur.args.length < 3 && (this.cur.type === '*' || this.cur.type === '>'));
        this.bulk = n + 2;
        return 'more';
      }
      case '*': case '%': case '~': case '>': case '|': {
        if (!/^-?\d{1,9}$/.test(rest)) return 'bad';
        let n = Number(rest);
        if (n < -1) return 'bad';
        if (type === '%' || type === '|') n *= 2;
        if (n <= 0) return this.elementDone() ? 'value' : 'more';
        this.stack.push(n);
        return 'more';
      }
      default:
        return 'bad';
    }
  }

  /** A bulk's payload is next: its length (CRLF included), or -1. */
  get bulkLeft(): number {
    return this.bulk;
  }

  /** `n` bytes of the bulk payload went by (`head`: the copied ones at its start, when any). */
  bulkBytes(n: number, head: Uint8Array | null): 'value' | 'more' {
    const payloadLeft = this.bulk - 2; // bytes of payload before the CRLF
    if (this.keepArg && this.cur) {
      if (head) {
        const want = Math.max(0, Math.min(KEEP_ARG - this.argPart.length, payloadLeft, head.length, n));
        this.argPart += latin1(head, 0, want);
      } else this.cur.cut = true;
    }
    if (this.cur && this.cur.type === '!' && this.stack.length === 0 && head && this.cur.error === 'ERR' && this.errPart === '') {
      this.errPart = latin1(head, 0, Math.min(head.length, 64, Math.max(0, payloadLeft)));
      this.cur.error = this.errPart.split(/[ \r]/)[0] || 'ERR';
    }
    this.bulk -= n;
    if (this.bulk > 0) return 'more';
    this.bulk = -1;
    if (this.keepArg && this.cur) {
      this.cur.args.push(this.argPart);
      this.keepArg = false;
    }
    this.argPart = '';
    this.errPart = '';
    return this.elementDone() ? 'value' : 'more';
  }

  private argPart = '';
  private errPart = '';

  take(): Value | null {
    const v = this.cur;
    this.cur = null;
    return v;
  }

  get current(): Value | null {
    return this.cur;
  }

  get inValue(): boolean {
    return this.stack.length > 0 || this.bulk >= 0;
  }

  private keep(text: string): void {
    if (this.cur && this.cur.args.length < 3) this.cur.args.push(text.slice(0, KEEP_ARG));
    this.keepArg = false;
  }

  /** One element ended: pops finished aggregates; true when the top-level value is complete. */
  private elementDone(): boolean {
    while (this.stack.length > 0) {
      if (--this.stack[this.stack.length - 1] > 0) return false;
      this.stack.pop();
    }
    this.values++;
    return true;
  }
}

interface Command {
  draft: ExchangeDraft;
  name: string | null;
  args: number | null;
  inline: boolean;
  /** Replies still expected (SUBSCRIBE a b: 2; under CLIENT REPLY OFF: 0). */
  expect: number;
  replyType: string | null;
  error: string | null;
}

export class RedisDecoder implements ProtocolDecoder {
  readonly protocol = 'redis' as const;
  private readonly reqDir: Direction;
  private readonly parsers: Record<Direction, RespParser> = { tx: new RespParser(), rx: new RespParser() };
  private readonly pending: Command[] = [];
  /** The command being read (its bytes so far). */
  private reading: ExchangeDraft | null = null;
  private argCount: number | null = null;
  private replyOff = false;
  private skipNext = false;
  private subscribed = false;
  private stopped = false;

  constructor(private readonly ctx: ProtocolContext, readonly role: Role) {
    this.reqDir = requestDirection(role);
  }

  pump(): void {
    for (let progress = true; progress && !this.stopped; ) progress = this.read(this.reqDir) || this.read(other(this.reqDir));
    if (!this.stopped && (this.ctx.streams.tx.buffered > this.ctx.settings.bufferCap || this.ctx.streams.rx.buffered > this.ctx.settings.bufferCap)) {
      this.fail('a RESP line longer than the buffer cap');
    }
  }

  close(): void {
    if (this.stopped) return;
    for (const c of this.pending) this.emit(c, 'no-response');
    this.pending.length = 0;
  }

  private fail(why: string): void {
    this.stopped = true;
    this.ctx.fail(why);
  }

  private read(dir: Direction): boolean {
    const s = this.ctx.streams[dir];
    const p = this.parsers[dir];
    const isReq = dir === this.reqDir;
    let progress = false;
    while (!this.stopped) {
      if (p.bulkLeft >= 0) {
        const head = s.holeAtHead() > 0 ? null : s.head();
        const ts = s.tsAt(0);
        if (p.bulkLeft === 2 && head) {
          // The CRLF that ends a bulk string: where it is readable, it must be there.
          if (head.length < 2 && !s.headFinal) return progress;
          if (head.length >= 2 && (head[0] !== 0x0d || head[1] !== LF)) {
            this.fail('not RESP: a bulk string without its CRLF');
            return progress;
          }
        }
        const n = s.skip(p.bulkLeft > 2 ? p.bulkLeft - 2 : p.bulkLeft);
        if (n === 0) return progress;
        progress = true;
        if (head === null) this.cutCurrent(dir);
        if (p.bulkBytes(n, head) === 'value') this.valueDone(dir, n, ts);
        else this.countBytes(dir, n, ts);
        continue;
      }
      if (s.holeAtHead() > 0) {
        this.fail(`${isReq ? 'command' : 'reply'} framing lost in a gap`);
        return progress;
      }
      const b = s.head();
      if (b.length === 0) return progress;
      if (isReq && !p.inValue && b[0] !== 0x2a) {
        // An inline command: one line.
        const lf = b.indexOf(LF);
        if (lf < 0) {
          if (s.headFinal || b.length > MAX_LINE) this.fail('inline command cut');
          return progress;
        }
        const ts = s.tsAt(0);
        const words = latin1(b, 0, lf).replace(/\r$/, '').trim().split(/\s+/).filter((w) => w.length > 0);
        s.consume(lf + 1);
        progress = true;
        if (words.length === 0) continue; // an empty line: redis ignores it
        const draft = newDraft();
        draft.requestStartNs = ts;
        draft.requestEndNs = s.lastTsNs;
        draft.requestBytes = lf + 1;
        this.command(draft, words.slice(0, 3), words.length, true);
        continue;
      }
      const lf = b.indexOf(LF);
      if (lf < 0) {
        if (s.headFinal || b.length > MAX_LINE) this.fail(`${isReq ? 'command' : 'reply'} line cut`);
        return progress;
      }
      if (lf === 0 || b[lf - 1] !== 0x0d) {
        this.fail(`not RESP: a line without CRLF`);
        return progress;
      }
      const ts = s.tsAt(0);
      const text = latin1(b, 0, lf - 1);
      const wasIn = p.inValue;
      const r = p.line(text);
      if (r === 'bad' || (isReq && !wasIn && text[0] !== '*')) {
        this.fail(`not RESP: ${JSON.stringify(printable(text, 32))}`);
        return progress;
      }
      if (isReq && !wasIn) this.argCount = Number(text.slice(1));
      s.consume(lf + 1);
      progress = true;
      if (r === 'value') this.valueDone(dir, lf + 1, ts);
      else this.countBytes(dir, lf + 1, ts);
    }
    return progress;
  }

  private cutCurrent(dir: Direction): void {
    if (dir === this.reqDir) {
      this.reading ??= newDraft();
      note(this.reading, 'args-cut');
    }
  }

  /** Bytes of a value in progress: the command being read, or the reply of the first pending command. */
  private countBytes(dir: Direction, n: number, ts: number): void {
    const s = this.ctx.streams[dir];
    if (dir === this.reqDir) {
      const d = (this.reading ??= newDraft());
      d.requestStartNs ??= ts;
      d.requestBytes += n;
      d.requestEndNs = s.lastTsNs;
      return;
    }
    const c = this.replyTarget();
    if (!c) return;
    c.draft.responseStartNs ??= ts;
    c.draft.responseBytes += n;
    c.draft.responseEndNs = s.lastTsNs;
  }

  private replyTarget(): Command | null {
    return this.pending.find((c) => c.expect > 0) ?? null;
  }

  private valueDone(dir: Direction, n: number, ts: number): void {
    const v = this.parsers[dir].take();
    if (dir === this.reqDir) {
      this.countBytes(dir, n, ts);
      const draft = this.reading ?? newDraft();
      this.reading = null;
      this.command(draft, v?.args ?? [], this.argCount, false);
      return;
    }
    // Out-of-band: RESP3 push, attribute, or a pub/sub message once subscribed.
    const first = v?.args[0]?.toLowerCase();
    const kind = v?.type;
    const push = kind === '>' || kind === '|' || (this.subscribed && kind === '*' && first !== undefined && PUBSUB_MESSAGES.has(first));
    if (push) return;
    let c = this.replyTarget();
    if (!c) {
      c = { draft: newDraft(), name: null, args: null, inline: false, expect: 1, replyType: null, error: null };
      note(c.draft, 'no-request');
      this.pending.push(c);
    }
    this.countBytes(dir, n, ts);
    c.replyType ??= kind ?? null;
    if (v?.error) c.error ??= v.error;
    if (first !== undefined && SUBSCRIBE.has(first)) this.subscribed = true;
    c.expect--;
    this.flush();
  }

  private command(draft: ExchangeDraft, args: string[], argc: number | null, inline: boolean): void {
    const name = redisCommandName(args);
    let expect = 1;
    if (name !== null && SUBSCRIBE.has(name)) expect = Math.max(1, (argc ?? 1) - 1);
    if (this.replyOff || this.skipNext) expect = 0;
    this.skipNext = false;
    if (name === 'client|reply') {
      // CLIENT REPLY OFF and SKIP get no reply themselves; SKIP mutes the next command only.
      const mode = (args[2] ?? '').toLowerCase();
      if (mode === 'off' || mode === 'skip') expect = 0;
      if (mode === 'off') this.replyOff = true;
      if (mode === 'skip') this.skipNext = true;
      if (mode === 'on') {
        this.replyOff = false;
        expect = 1;
      }
    }
    if (name === 'monitor') {
      // MONITOR turns the connection into a feed: its +OK is the last reply.
      this.pending.push({ draft, name, args: argc, inline, expect, replyType: null, error: null });
      return;
    }
    if (this.pending.filter((c) => c.expect > 0).length >= this.ctx.settings.maxPending) {
      this.fail(`more than ${this.ctx.settings.maxPending} commands without a reply`);
      return;
    }
    this.pending.push({ draft, name, args: argc, inline, expect, replyType: null, error: null });
    this.flush();
  }

  private flush(): void {
    while (this.pending.length > 0 && this.pending[0].expect <= 0) {
      const c = this.pending.shift()!;
      this.emit(c, null);
      if (c.name === 'monitor' && c.error === null) {
        this.stopped = true;
        this.ctx.opaque('MONITOR feed');
        return;
      }
    }
  }

  private emit(c: Command, why: string | null): void {
    if (why) note(c.draft, why, false);
    const detail: RedisDetail = { kind: 'redis', command: c.name === null ? null : printable(c.name, 64), args: c.args, replyType: c.replyType, error: c.error === null ? null : printable(c.error, 64), inline: c.inline };
    this.ctx.emit(finish(this.ctx, c.draft, {
      protocol: 'redis',
      role: this.role,
      operation: detail.command ?? '?',
      status: c.replyType === null ? '' : c.error ?? 'OK',
      error: c.error !== null,
      host: null,
      detail,
    }));
  }
}
