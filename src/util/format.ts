// SPDX-License-Identifier: MIT
// Pure text helpers for the terminal report. Nothing here reads the clock, the locale or the
// terminal, so the same Report always renders to the same text.

const BYTE_UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** IEC byte count: "0 B", "1023 B", "1.0 KiB", "12.3 MiB", "512 GiB". One decimal below 100,
 *  none from 100 up, so a figure is at most 8 characters ("1023 MiB"). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return `${n} B`;
  if (n < 0) return `-${formatBytes(-n)}`;
  if (n < 1024) return `${Math.round(n)} B`;
  let value = n;
  for (let i = 0; i < BYTE_UNITS.length; i++) {
    value /= 1024;
    const text = value < 99.95 ? value.toFixed(1) : String(Math.round(value));
    // 1023.96 KiB rounds to "1024": say "1.0 MiB" instead.
    if (Number(text) < 1024 || i === BYTE_UNITS.length - 1) return `${text} ${BYTE_UNITS[i]}`;
  }
  return `${n} B`; // unreachable
}

/** Exact count with thousands separators: "0", "999", "1,234,567". */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const sign = n < 0 ? '-' : '';
  const digits = String(Math.round(Math.abs(n)));
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Human duration from milliseconds: "0 ms", "0.42 ms", "850 ms", "1.25 s", "2m03s", "1h02m03s". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms === 0) return '0 ms';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 10 && !Number.isInteger(ms)) return `${ms.toFixed(1)} ms`;
  if (Math.round(ms) < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 59.995) return `${seconds.toFixed(2)} s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (v: number) => String(v).padStart(2, '0');
  return h > 0 ? `${h}h${pad(m)}m${pad(s)}s` : `${m}m${pad(s)}s`;
}

/** "127.0.0.1:80", "[::1]:8080"; "*" for an unknown address ("*:5353" if the port is known). */
export function formatEndpoint(addr: string, port: number): string {
  if (addr === '*') return port ? `*:${port}` : '*';
  if (addr.includes(':')) return `[${addr}]:${port}`;
  return `${addr}:${port}`;
}

const SIGNAL_NAMES: Record<number, string> = {
  1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 4: 'SIGILL', 5: 'SIGTRAP', 6: 'SIGABRT', 7: 'SIGBUS',
  8: 'SIGFPE', 9: 'SIGKILL', 10: 'SIGUSR1', 11: 'SIGSEGV', 12: 'SIGUSR2', 13: 'SIGPIPE',
  14: 'SIGALRM', 15: 'SIGTERM', 16: 'SIGSTKFLT', 17: 'SIGCHLD', 18: 'SIGCONT', 19: 'SIGSTOP',
  20: 'SIGTSTP', 21: 'SIGTTIN', 22: 'SIGTTOU', 23: 'SIGURG', 24: 'SIGXCPU', 25: 'SIGXFSZ',
  26: 'SIGVTALRM', 27: 'SIGPROF', 28: 'SIGWINCH', 29: 'SIGIO', 30: 'SIGPWR', 31: 'SIGSYS',
};

/** Linux signal name ("SIGTERM"), or "signal 40" for one without a common name. */
export function signalName(signal: number): string {
  return SIGNAL_NAMES[signal] ?? `signal ${signal}`;
}

/** "0", "1", "killed by SIGTERM (143)"; "unknown" when neither code nor signal is known. */
export function formatExit(code: number | null, signal: number | null): string {
  if (signal !== null && signal > 0) return `killed by ${signalName(signal)} (${code ?? 128 + signal})`;
  if (code === null) return 'unknown';
  return String(code);
}

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One argument quoted the way a POSIX shell would need it (display only, never executed). */
function quoteArg(arg: string): string {
  if (arg === '') return "''";
  if (SAFE_WORD.test(arg)) return arg;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(arg)) {
    const body = Array.from(arg)
      .map((ch) => {
        const c = ch.codePointAt(0)!;
        if (ch === '\n') return '\\n';
        if (ch === '\t') return '\\t';
        if (ch === '\r') return '\\r';
        if (ch === '\\') return '\\\\';
        if (ch === "'") return "\\'";
        if (c < 0x20 || c === 0x7f) return `\\x${c.toString(16).padStart(2, '0')}`;
        return ch;
      })
      .join('');
    return `$'${body}'`;
  }
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Shell-quoted command line for display, cut to `max` characters with a trailing "…". */
export function formatArgv(argv: readonly string[], max = Infinity): string {
  return truncate(argv.map(quoteArg).join(' '), max);
}

/** Cut `text` to at most `max` characters (code points), the last being "…" when cut. */
export function truncate(text: string, max: number): string {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  if (max <= 0) return '';
  return chars.slice(0, max - 1).join('') + '…';
}
