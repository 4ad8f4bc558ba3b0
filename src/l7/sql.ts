// SPDX-License-Identifier: MIT
// Query text normalised so that "the same query with other values" is one string, the way
// pg_stat_statements shows it: literals (strings, numbers, dollar-quoted, E'', B'', X'', U&'')
// become $n, numbered after the highest parameter the text already has. Also: comments dropped
// (ORMs put request ids in them), whitespace folded to one space, unquoted words lower-cased
// (PostgreSQL folds them anyway). Quoted identifiers are kept as they are.

const MAX_INPUT = 16 * 1024;
const MAX_OUTPUT = 1000;

const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
const isDigit = (c: string) => c >= '0' && c <= '9';
const isIdentStart = (c: string) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c.charCodeAt(0) >= 0x80;
const isIdent = (c: string) => isIdentStart(c) || isDigit(c) || c === '$';

/** End (exclusive) of a quoted run starting at `at` (the opening quote); doubled quotes escape, and
 *  with `backslash` so does '\'. An unterminated one runs to the end. */
function quotedEnd(q: string, at: number, quote: string, backslash: boolean): number {
  for (let i = at + 1; i < q.length; i++) {
    const c = q[i];
    if (backslash && c === '\\') {
      i++;
      continue;
    }
    if (c === quote) {
      if (q[i + 1] === quote) {
        i++;
        continue;
      }
      return i + 1;
    }
  }
  return q.length;
}

export function normalizeQuery(text: string): string {
  const q = text.length > MAX_INPUT ? text.slice(0, MAX_INPUT) : text;
  let maxParam = 0;
  for (const m of q.matchAll(/\$(\d{1,5})/g)) maxParam = Math.max(maxParam, Number(m[1]));
  let n = maxParam;
  const out: string[] = [];
  let space = false;
  const push = (tok: string) => {
    if (space && out.length > 0) out.push(' ');
    space = false;
    out.push(tok);
  };
  let i = 0;
  while (i < q.length) {
    const c = q[i];
    const c2 = q[i + 1];
    if (isSpace(c)) {
      space = true;
      i++;
      continue;
    }
    if (c === '-' && c2 === '-') {
      const e = q.indexOf('\n', i);
      i = e < 0 ? q.length : e + 1;
      space = true;
      continue;
    }
    if (c === '/' && c2 === '*') {
      let depth = 1;
      let j = i + 2;
      while (j < q.length && depth > 0) {
        if (q[j] === '/' && q[j + 1] === '*') {
          depth++;
          j += 2;
        } else if (q[j] === '*' && q[j + 1] === '/') {
          depth--;
          j += 2;
        } else j++;
      }
      i = j;
      space = true;
      continue;
    }
    if (c === "'") {
      i = quotedEnd(q, i, "'", false);
      push(`$${++n}`);
      continue;
    }
    if ((c === 'e' || c === 'E') && c2 === "'") {
      i = quotedEnd(q, i + 1, "'", true);
      push(`$${++n}`);
      continue;
    }
    if ((c === 'b' || c === 'B' || c === 'x' || c === 'X' || c === 'n' || c === 'N') && c2 === "'") {
      i = quotedEnd(q, i + 1, "'", false);
      push(`$${++n}`);
      continue;
    }
    if ((c === 'u' || c === 'U') && c2 === '&' && q[i + 2] === "'") {
      i = quotedEnd(q, i + 2, "'", false);
      push(`$${++n}`);
      continue;
    }
    if (c === '"') {
      const e = quotedEnd(q, i, '"', false);
      push(q.slice(i, e));
      i = e;
      continue;
    }
    if (c === '$') {
      if (isDigit(c2 ?? '')) {
        let j = i + 1;
        while (j < q.length && isDigit(q[j])) j++;
        push(q.slice(i, j));
        i = j;
        continue;
      }
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(q.slice(i, i + 64));
      if (tag) {
        const close = q.indexOf(tag[0], i + tag[0].length);
        i = close < 0 ? q.length : close + tag[0].length;
        push(`$${++n}`);
        continue;
      }
    }
    if (isDigit(c) || (c === '.' && isDigit(c2 ?? ''))) {
      let j = i;
      if (c === '0' && (c2 === 'x' || c2 === 'X' || c2 === 'o' || c2 === 'O' || c2 === 'b' || c2 === 'B')) {
        j += 2;
        while (j < q.length && /[0-9a-fA-F_]/.test(q[j])) j++;
      } else {
        while (j < q.length && (isDigit(q[j]) || q[j] === '_')) j++;
        if (q[j] === '.') {
          j++;
          while (j < q.length && isDigit(q[j])) j++;
        }
        if ((q[j] === 'e' || q[j] === 'E') && (isDigit(q[j + 1] ?? '') || ((q[j + 1] === '+' || q[j + 1] === '-') && isDigit(q[j + 2] ?? '')))) {
          j += 2;
          while (j < q.length && isDigit(q[j])) j++;
        }
      }
      push(`$${++n}`);
      i = j;
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < q.length && isIdent(q[j])) j++;
      push(q.slice(i, j).toLowerCase());
      i = j;
      continue;
    }
    push(c);
    i++;
  }
  const s = out.join('');
  return s.length > MAX_OUTPUT ? `${s.slice(0, MAX_OUTPUT)}…` : s;
}

/** Rows a CommandComplete tag counts ("SELECT 3" → 3, "INSERT 0 5" → 5), or null. */
export function tagRows(tag: string): number | null {
  const m = /^(SELECT|INSERT|UPDATE|DELETE|MERGE|FETCH|MOVE|COPY)(?: \d+)? (\d+)$/.exec(tag);
  return m ? Number(m[2]) : null;
}

/** The command of a tag, without its counts ("INSERT 0 5" → "INSERT", "CREATE TABLE" as is). */
export function tagCommand(tag: string): string {
  return tag.replace(/( \d+)+$/, '');
}
