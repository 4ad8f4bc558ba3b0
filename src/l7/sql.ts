// SPDX-License-Identifier: MIT
// Query text normalised so that "the same query with other values" is one string, the way
// pg_stat_statements shows it: literals (strings, numbers, dollar-quoted, E'', B'', X'', U&'')
// become $n, numbered after the highest parameter the text already has. Also: comments dropped
// (ORMs put request ids in them), whitespace folded to one space, unquoted words lower-cased
// (PostgreSQL folds them anyway). Quoted identifiers are kept as they are. As pg_stat_statements also:
// a unary minus is part of its number ("+ -5" → "+ $1"), TRUE/FALSE are constants (not after IS),
// GROUP BY / ORDER BY ordinals stay (the parser resolves them to columns: no constant is left), and a
// trailing ';' is not part of the statement.

const MAX_INPUT = 16 * 1024;
const MAX_OUTPUT = 1000;
/** Words a '-' after which is unary (no operand before it). */
const NOT_OPERAND = new Set(['select', 'where', 'and', 'or', 'not', 'when', 'then', 'else', 'by', 'limit', 'offset', 'values', 'in', 'between', 'is', 'like', 'ilike', 'set', 'return', 'returning', 'having', 'on', 'case', 'array', 'distinct', 'all', 'any', 'some']);
/** Words that end a GROUP BY / ORDER BY list. */
const ORDINAL_LIST_END = new Set(['limit', 'offset', 'having', 'window', 'fetch', 'for', 'union', 'except', 'intersect', 'returning']);
const ORDINAL_FOLLOWS = /^\s*(?:$|[,);]|(?:asc|desc|nulls|order|limit|offset|having|window|fetch|for|union|except|intersect|returning)\b)/i;

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
  // what the previous tokens were: for unary minus, IS TRUE and GROUP BY / ORDER BY ordinals
  let prev = '';
  let prev2 = '';
  let prevOperand = false;
  let minusAt = -1;
  let depth = 0;
  let listDepth = -1;
  let itemStart = false;
  const push = (tok: string, operand = true) => {
    if (space && out.length > 0) out.push(' ');
    space = false;
    out.push(tok);
    prev2 = prev;
    prev = tok;
    prevOperand = operand;
    minusAt = -1;
    itemStart = false;
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
      if (itemStart && /^\d+$/.test(q.slice(i, j)) && ORDINAL_FOLLOWS.test(q.slice(j, j + 16))) {
        push(q.slice(i, j));
        i = j;
        continue;
      }
      if (minusAt >= 0 && minusAt === out.length - 1) {
        out.pop();
        space = false;
      }
      push(`$${++n}`);
      i = j;
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < q.length && isIdent(q[j])) j++;
      const word = q.slice(i, j).toLowerCase();
      if (ORDINAL_LIST_END.has(word)) listDepth = -1;
      const ordinals = word === 'by' && (prev === 'group' || prev === 'order');
      const afterIs = prev === 'is' || (prev === 'not' && prev2 === 'is');
      if ((word === 'true' || word === 'false') && !afterIs) push(`$${++n}`);
      else push(word, !NOT_OPERAND.has(word));
      if (ordinals) {
        listDepth = depth;
        itemStart = true;
      }
      i = j;
      continue;
    }
    if (c === '(') depth++;
    if (c === ')' && --depth < listDepth) listDepth = -1;
    if (c === ';') listDepth = -1;
    const unaryMinus = c === '-' && !prevOperand;
    push(c, c === ')' || c === ']');
    if (unaryMinus) minusAt = out.length - 1;
    if (c === ',' && depth === listDepth) itemStart = true;
    i++;
  }
  while (out.length > 0 && (out[out.length - 1] === ';' || out[out.length - 1] === ' ')) out.pop();
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
