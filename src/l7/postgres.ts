// SPDX-License-Identifier: MIT
// PostgreSQL frontend/backend protocol 3 (docs: "Message Flow", "Message Formats"): the startup
// (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), simple queries (Q ... Z), the extended
// protocol (Parse/Bind/Describe/Execute/Close ... Sync), CommandComplete tags, ErrorResponse
// (severity + SQLSTATE), ReadyForQuery. Every message has its length, so payloads past the copy limit
// are skipped; a gap where a message header should be loses the framing and decoding stops.
//
// One exchange per Query, per Execute, per Parse/Describe group without an Execute ('prepare'), per
// FunctionCall, and one for the startup. The client's messages before an Execute (Parse, Bind,
// Describe) and the Sync after the group's last one count in that Execute's request; the server's
// answers to them in its response.
import { finish, newDraft, note, printable, type ExchangeDraft, type ProtocolContext, type ProtocolDecoder } from './protocol';
import { latin1 } from './stream';
import { normalizeQuery, tagCommand, tagRows } from './sql';
import type { Direction, PostgresDetail, Role } from './types';
import type { Match } from './http1';

const PROTOCOL_3 = 3;
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const MAX_STARTUP = 10000;
/** Payload bytes kept of a message whose content is read (query text, tags, errors). */
const MAX_KEEP = 16 * 1024;
const MAX_QUERY_TEXT = 1000;
const MAX_STATEMENTS = 1024;
const CLIENT_TYPES = new Set('QPBDESHCFXdcfp'.split(''));
const SERVER_TYPES = new Set('123tTnDCIsEZNASKRVvGHWdc'.split(''));

const u32 = (b: Uint8Array, at: number) => ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;

/** The untyped first message of a connection: startup, SSL or GSS encryption request, cancel. */
function startupCode(b: Uint8Array): { match: Match; code?: number } {
  if (b.length < 8) return { match: 'more' };
  const len = u32(b, 0);
  const code = u32(b, 4);
  if (code === SSL_REQUEST || code === GSSENC_REQUEST) return { match: len === 8 ? 'yes' : 'no', code };
  if (code === CANCEL_REQUEST) return { match: len === 16 ? 'yes' : 'no', code };
  if (code >>> 16 === PROTOCOL_3 && len >= 8 && len <= MAX_STARTUP) return { match: 'yes', code };
  return { match: 'no' };
}

/** Typed messages filling the bytes exactly (mid-stream): the client's ending in Q, S or H, the
 *  server's in Z. */
function typedRun(b: Uint8Array, types: Set<string>, lastTypes: string): boolean {
  let at = 0;
  let last = '';
  let n = 0;
  while (at < b.length) {
    if (at + 5 > b.length) return false;
    const t = String.fromCharCode(b[at]);
    const len = u32(b, at + 1);
    if (!types.has(t) || len < 4 || len > 1 << 30) return false;
    at += 1 + len;
    last = t;
    n++;
  }
  return at === b.length && n > 0 && lastTypes.includes(last);
}

export function detectPostgres(b: Uint8Array, cut: boolean, midStream: boolean): { match: Match; sender?: Role; startup?: boolean } {
  if (b.length === 0) return { match: 'more' };
  if (b[0] === 0) {
    const s = startupCode(b);
    if (s.match === 'more') return cut ? { match: 'no' } : { match: 'more' };
    return s.match === 'yes' ? { match: 'yes', sender: 'client', startup: true } : { match: 'no' };
  }
  if (!midStream || cut) return { match: 'no' };
  if (typedRun(b, CLIENT_TYPES, 'QSH')) {
    // Query text is readable; a server run of the same shape would end in Z.
    if (b[0] === 0x51 && (b.length < 6 || b[b.length - 1] !== 0)) return { match: 'no' };
    return { match: 'yes', sender: 'client' };
  }
  if (typedRun(b, SERVER_TYPES, 'Z') && b.length >= 6 && 'ITE'.includes(String.fromCharCode(b[b.length - 1]))) return { match: 'yes', sender: 'server' };
  return { match: 'no' };
}

type OpKind = 'startup' | 'ssl' | 'cancel' | 'query' | 'function' | 'parse' | 'bind' | 'describe' | 'execute' | 'close' | 'sync';

interface PgExchange {
  draft: ExchangeDraft;
  mode: PostgresDetail['mode'];
  operation: string | null;
  query: string | null;
  tags: string[];
  errorSeverity: string | null;
  errorCode: string | null;
  status: string | null;
  user: string | null;
  database: string | null;
  /** Operations of it still waiting for the server. */
  open: number;
  executed: boolean;
  emitted: boolean;
  /** A Sync with no query of its own: counted, never given. */
  silent: boolean;
}

interface Op {
  kind: OpKind;
  x: PgExchange;
}

/** One direction's message being read. */
interface Msg {
  type: string; // '' for an untyped startup message
  len: number; // payload bytes left
  keep: Uint8Array[];
  kept: number;
  cut: boolean;
  startTs: number;
}

/** cstrings of a payload from `at`, up to n of them. */
function cstrings(b: Uint8Array, at: number, n: number): { values: string[]; next: number } {
  const values: string[] = [];
  while (values.length < n && at < b.length) {
    const z = b.indexOf(0, at);
    const end = z < 0 ? b.length : z;
    values.push(Buffer.from(b.subarray(at, end)).toString('utf8'));
    at = end + 1;
  }
  return { values, next: at };
}

export class PostgresDecoder implements ProtocolDecoder {
  readonly protocol = 'postgres' as const;
  private readonly clientDir: Direction;
  private readonly msg: Record<Direction, Msg | null> = { tx: null, rx: null };
  /** The client's next message is untyped (startup phase). */
  private clientUntyped: boolean;
  /** The server's next answer is the one byte to an SSLRequest / GSSENCRequest. */
  private serverByte: 'ssl' | 'gss' | null = null;
  private readonly ops: Op[] = [];
  private readonly exchanges: PgExchange[] = [];
  /** The exchange the client's extended-protocol messages go to until its Execute. */
  private building: PgExchange | null = null;
  /** The group's last exchange with an Execute (its Sync goes to it). */
  private lastExecuted: PgExchange | null = null;
  private readonly statements = new Map<string, string>();
  private readonly portals = new Map<string, string>();
  private stopped = false;

  constructor(private readonly ctx: ProtocolContext, readonly role: Role, startup: boolean) {
    this.clientDir = role === 'client' ? 'tx' : 'rx';
    this.clientUntyped = startup;
  }

  pump(): void {
    const serverDir: Direction = this.clientDir === 'tx' ? 'rx' : 'tx';
    for (let progress = true; progress && !this.stopped; ) progress = this.read(this.clientDir) || this.read(serverDir);
  }

  close(): void {
    if (this.stopped) return;
    for (const x of this.exchanges) {
      if (x.open > 0) {
        note(x.draft, x.draft.responseStartNs === null ? 'no-response' : 'response-cut', x.draft.responseStartNs !== null);
        x.open = 0;
      }
    }
    if (this.building && !this.exchanges.includes(this.building) && this.building.draft.requestBytes > 0) {
      note(this.building.draft, 'no-response', false);
      this.exchanges.push(this.building);
    }
    this.building = null;
    this.ops.length = 0;
    this.flush();
  }

  private fail(why: string): void {
    this.stopped = true;
    this.ctx.fail(why);
  }

  private read(dir: Direction): boolean {
    const s = this.ctx.streams[dir];
    const isClient = dir === this.clientDir;
    let progress = false;
    while (!this.stopped) {
      let m = this.msg[dir];
      if (!m) {
        if (s.holeAtHead() > 0) {
          this.fail(`${isClient ? 'client' : 'server'} message framing lost in a gap`);
          return progress;
        }
        const b = s.head();
        if (!isClient && this.serverByte !== null) {
          if (b.length === 0) return progress;
          this.sslAnswer(String.fromCharCode(b[0]), s.tsAt(0));
          s.consume(1);
          progress = true;
          continue;
        }
        const untyped = isClient && this.clientUntyped;
        const hdr = untyped ? 4 : 5;
        if (b.length < hdr) {
          if (b.length > 0 && s.headFinal) this.fail('a message header cut by a gap');
          return progress;
        }
        const type = untyped ? '' : String.fromCharCode(b[0]);
        const len = u32(b, untyped ? 0 : 1);
        if (len < 4 || len > 1 << 30 || (!untyped && !(isClient ? CLIENT_TYPES : SERVER_TYPES).has(type))) {
          this.fail(`not PostgreSQL: message ${JSON.stringify(printable(type))} of length ${len}`);
          return progress;
        }
        m = { type, len: len - 4, keep: [], kept: 0, cut: false, startTs: s.tsAt(0) };
        this.msg[dir] = m;
        s.consume(hdr);
        this.count(dir, hdr, m.startTs, m);
        progress = true;
      }
      // Payload: keep the copied bytes the message's content needs, skip the rest.
      while (m.len > 0) {
        const hole = s.holeAtHead();
        let n: number;
        if (hole > 0) {
          n = s.skip(Math.min(hole, m.len));
          m.cut = true;
        } else {
          n = Math.min(s.headLength, m.len);
          if (n === 0) break;
          if (!m.cut && m.kept < MAX_KEEP && this.wants(dir, m.type)) {
            const k = Math.min(n, MAX_KEEP - m.kept);
            m.keep.push(s.head().slice(0, k));
            m.kept += k;
            if (k < n) m.cut = true;
          }
          s.consume(n);
        }
        m.len -= n;
        this.count(dir, n, m.startTs, m);
        progress = true;
      }
      if (m.len > 0) return progress;
      this.msg[dir] = null;
      const payload = m.keep.length === 1 ? m.keep[0] : Buffer.concat(m.keep);
      if (isClient) this.clientMessage(m, payload);
      else this.serverMessage(m, payload);
      this.flush();
    }
    return progress;
  }

  private wants(dir: Direction, type: string): boolean {
    return dir === this.clientDir ? type === '' || 'QPBECF'.includes(type) : 'CEZ'.includes(type);
  }

  /** Message bytes as they go by: to the exchange the message belongs to. */
  private count(dir: Direction, n: number, startTs: number, m: Msg): void {
    const x = dir === this.clientDir ? this.requestTarget(m.type) : this.responseTarget(m.type);
    if (!x) return;
    const s = this.ctx.streams[dir];
    const d = x.draft;
    if (dir === this.clientDir) {
      d.requestStartNs ??= startTs;
      d.requestBytes += n;
      d.requestEndNs = s.lastTsNs;
    } else {
      d.responseStartNs ??= startTs;
      d.responseBytes += n;
      d.responseEndNs = s.lastTsNs;
    }
  }

  private requestTarget(type: string): PgExchange | null {
    if (type === '' || type === 'p') return this.startupExchange();
    if (type === 'Q' || type === 'F') return this.pendingSimple(type);
    if (type === 'S') return this.syncTarget();
    if (type === 'X' || type === 'd' || type === 'c' || type === 'f' || type === 'H') return this.ops[0]?.x ?? this.building ?? this.lastExecuted;
    return (this.building ??= this.newExchange('prepare'));
  }

  private responseTarget(type: string): PgExchange | null {
    if (this.ops.length === 0 && 'CEDTIsGHW'.includes(type)) {
      // Mid-stream: the answer to a query sent before the trace.
      const x = this.newExchange('simple');
      note(x.draft, 'no-request');
      this.addOp('query', x);
    }
    return this.ops[0]?.x ?? null;
  }

  /** A Sync goes with the group's exchange; a Sync alone (or after its exchange was given) with a
   *  silent one: its bytes are of no query. */
  private syncTarget(): PgExchange {
    if (this.building) return this.building;
    if (this.lastExecuted && !this.lastExecuted.emitted) return this.lastExecuted;
    this.silentSync ??= { ...this.newExchange('prepare'), silent: true };
    return this.silentSync;
  }
  private silentSync: PgExchange | null = null;

  /** The startup exchange: the first one, while its startup op is open. */
  private startupExchange(): PgExchange {
    const op = this.ops.find((o) => o.kind === 'startup' || o.kind === 'ssl' || o.kind === 'cancel');
    if (op) return op.x;
    this.pendingStartup ??= this.newExchange('startup');
    return this.pendingStartup;
  }
  private pendingStartup: PgExchange | null = null;
  private pendingQuery: PgExchange | null = null;

  private pendingSimple(type: string): PgExchange {
    this.pendingQuery ??= this.newExchange(type === 'F' ? 'function' : 'simple');
    return this.pendingQuery;
  }

  private newExchange(mode: PostgresDetail['mode']): PgExchange {
    return {
      draft: newDraft(), mode, operation: null, query: null, tags: [], errorSeverity: null, errorCode: null, status: null,
      user: null, database: null, open: 0, executed: false, emitted: false, silent: false,
    };
  }

  private addOp(kind: OpKind, x: PgExchange): void {
    if (this.ops.length >= this.ctx.settings.maxPending * 4) {
      this.fail(`more than ${this.ctx.settings.maxPending * 4} messages without an answer`);
      return;
    }
    if (!this.exchanges.includes(x)) this.exchanges.push(x);
    x.open++;
    this.ops.push({ kind, x });
  }

  private setQuery(x: PgExchange, text: string, cut: boolean): void {
    x.query = text.length > MAX_QUERY_TEXT ? text.slice(0, MAX_QUERY_TEXT) : text;
    if (cut) note(x.draft, 'query-cut');
  }

  private clientMessage(m: Msg, p: Uint8Array): void {
    if (m.type === '') return this.startupMessage(m, p);
    switch (m.type) {
      case 'Q': {
        const x = this.pendingSimple('Q');
        this.pendingQuery = null;
        this.setQuery(x, cstrings(p, 0, 1).values[0] ?? '', m.cut);
        this.addOp('query', x);
        return;
      }
      case 'F': {
        const x = this.pendingSimple('F');
        this.pendingQuery = null;
        x.operation = 'function call';
        this.addOp('function', x);
        return;
      }
      case 'P': {
        const [name, query] = cstrings(p, 0, 2).values;
        const x = (this.building ??= this.newExchange('prepare'));
        if (query !== undefined) {
          if (this.statements.size >= MAX_STATEMENTS && !this.statements.has(name ?? '')) this.statements.delete(this.statements.keys().next().value as string);
          this.statements.set(name ?? '', query);
          x.query ??= query.slice(0, MAX_QUERY_TEXT);
        }
        if (m.cut) note(x.draft, 'query-cut');
        this.addOp('parse', x);
        return;
      }
      case 'B': {
        const [portal, statement] = cstrings(p, 0, 2).values;
        if (portal !== undefined && statement !== undefined) this.portals.set(portal, statement);
        this.addOp('bind', (this.building ??= this.newExchange('prepare')));
        return;
      }
      case 'D':
        this.addOp('describe', (this.building ??= this.newExchange('prepare')));
        return;
      case 'C':
        this.addOp('close', (this.building ??= this.newExchange('prepare')));
        return;
      case 'E': {
        const [portal] = cstrings(p, 0, 1).values;
        const x = (this.building ??= this.newExchange('extended'));
        x.mode = 'extended';
        x.executed = true;
        const stmt = this.portals.get(portal ?? '');
        const text = stmt === undefined ? undefined : this.statements.get(stmt);
        if (text !== undefined) x.query = text.slice(0, MAX_QUERY_TEXT);
        else if (x.query === null) note(x.draft, 'statement-unknown');
        this.addOp('execute', x);
        this.building = null;
        this.lastExecuted = x;
        return;
      }
      case 'S': {
        const x = this.syncTarget();
        this.addOp('sync', x);
        this.building = null;
        this.lastExecuted = null;
        this.silentSync = null;
        return;
      }
      case 'X':
        return;
      default:
        return; // H, d, c, f, p: counted, no answer of their own
    }
  }

  private startupMessage(m: Msg, p: Uint8Array): void {
    const code = u32(p, 0);
    const x = this.startupExchange();
    this.pendingStartup = null;
    if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
      x.mode = 'startup';
      x.operation = code === SSL_REQUEST ? 'SSLRequest' : 'GSSENCRequest';
      this.serverByte = code === SSL_REQUEST ? 'ssl' : 'gss';
      this.addOp('ssl', x);
      return;
    }
    if (code === CANCEL_REQUEST) {
      x.operation = 'CancelRequest';
      this.clientUntyped = false;
      this.exchanges.push(x);
      note(x.draft, 'no-response', false);
      return;
    }
    const params = cstrings(p, 4, 64).values;
    for (let i = 0; i + 1 < params.length; i += 2) {
      if (params[i] === 'user') x.user = printable(params[i + 1], 64);
      if (params[i] === 'database') x.database = printable(params[i + 1], 64);
    }
    x.database ??= x.user;
    x.operation = 'startup';
    this.clientUntyped = false;
    this.addOp('startup', x);
  }

  private sslAnswer(c: string, ts: number): void {
    const op = this.ops[0];
    const what = this.serverByte;
    this.serverByte = null;
    if (op && op.kind === 'ssl') {
      const d = op.x.draft;
      d.responseStartNs = ts;
      d.responseEndNs = ts;
      d.responseBytes += 1;
      op.x.status = c;
      this.pop();
    }
    if (c === 'S' || c === 'G') {
      this.flush();
      this.stopped = true;
      this.ctx.opaque(what === 'ssl' ? 'PostgreSQL: TLS after SSLRequest' : 'PostgreSQL: GSS encryption');
      return;
    }
    // 'N': the client sends its startup message next ('E': an old server's error follows as a message).
    this.clientUntyped = c === 'N';
  }

  private pop(): Op | undefined {
    const op = this.ops.shift();
    if (op) op.x.open--;
    return op;
  }

  private serverMessage(m: Msg, p: Uint8Array): void {
    const head = this.ops[0];
    if (!head) return;
    const x = head.x;
    switch (m.type) {
      case '1':
        if (head.kind === 'parse') this.pop();
        return;
      case '2':
        if (head.kind === 'bind') this.pop();
        return;
      case '3':
        if (head.kind === 'close') this.pop();
        return;
      case 'n':
      case 'T':
        if (head.kind === 'describe') this.pop();
        return;
      case 'C': {
        const tag = cstrings(p, 0, 1).values[0] ?? '';
        x.tags.push(printable(tag, 64));
        if (head.kind === 'execute') this.pop();
        return;
      }
      case 'I':
      case 's':
        if (head.kind === 'execute') this.pop();
        return;
      case 'V':
        return;
      case 'E': {
        this.error(x, p);
        if (head.kind === 'startup' || head.kind === 'ssl') {
          this.pop();
          return;
        }
        if (head.kind === 'query' || head.kind === 'function') return; // Z follows
        // Extended: the server skips everything up to the Sync.
        while (this.ops.length > 0 && this.ops[0].kind !== 'sync') {
          const op = this.pop()!;
          if (op.x !== x && op.kind === 'execute') {
            note(op.x.draft, 'skipped-after-error', false);
            op.x.status ??= 'skipped';
          }
        }
        return;
      }
      case 'Z': {
        while (this.ops.length > 0) {
          const op = this.pop()!;
          if (op.kind === 'sync' || op.kind === 'query' || op.kind === 'function' || op.kind === 'startup') break;
        }
        return;
      }
      default:
        return;
    }
  }

  private error(x: PgExchange, p: Uint8Array): void {
    let at = 0;
    let sev: string | null = null;
    let sevLocal: string | null = null;
    let code: string | null = null;
    while (at < p.length && p[at] !== 0) {
      const field = String.fromCharCode(p[at]);
      const z = p.indexOf(0, at + 1);
      const end = z < 0 ? p.length : z;
      const value = latin1(p, at + 1, end);
      if (field === 'V') sev = value;
      else if (field === 'S') sevLocal = value;
      else if (field === 'C') code = value;
      at = end + 1;
    }
    if (x.errorCode === null) {
      x.errorSeverity = printable(sev ?? sevLocal ?? 'ERROR', 16);
      x.errorCode = code === null ? null : printable(code, 5);
    }
  }

  private flush(): void {
    while (this.exchanges.length > 0 && this.exchanges[0].open <= 0 && this.exchanges[0] !== this.building) {
      const x = this.exchanges.shift()!;
      x.emitted = true;
      if (!x.silent) this.emit(x);
    }
  }

  private emit(x: PgExchange): void {
    const normalized = x.query === null ? null : normalizeQuery(x.query);
    const rows = x.tags.map(tagRows).filter((r): r is number => r !== null);
    const lastTag = x.tags.length > 0 ? tagCommand(x.tags[x.tags.length - 1]) : null;
    const detail: PostgresDetail = {
      kind: 'postgres', mode: x.mode, query: x.query, normalized, tags: x.tags,
      rows: rows.length > 0 ? rows.reduce((a, b) => a + b, 0) : null,
      errorSeverity: x.errorSeverity, errorCode: x.errorCode,
    };
    if (x.mode === 'startup') {
      detail.user = x.user;
      detail.database = x.database;
    }
    const answered = x.draft.responseStartNs !== null;
    const status = x.errorCode ?? (x.errorSeverity ? 'ERROR' : null) ?? x.status ?? lastTag ?? (answered ? 'OK' : '');
    this.ctx.emit(finish(this.ctx, x.draft, {
      protocol: 'postgres',
      role: this.role,
      operation: x.operation ?? normalized ?? (x.mode === 'prepare' ? 'prepare' : '?'),
      status,
      error: x.errorSeverity !== null,
      host: x.mode === 'startup' ? x.database : null,
      detail,
    }));
  }
}
