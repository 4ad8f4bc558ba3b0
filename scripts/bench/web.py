#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make bench, step "web": a real nginx (Debian package, own config in a temp dir, loopback only) under
wrk with keep-alive, over HTTP and over HTTPS (a certificate made here), untraced and with `proctap
attach` on it: plain, with the L7 view on (--l7), and over HTTPS plain (no reader of the plaintext: no
uprobes) and with the L7 view (libssl uprobes, plaintext decoded). Alternating repetitions, medians; the figure is wrk's request rate, as a ratio to the
untraced rate of the same scheme in the same run. Targets (issues 15, 16): HTTP with --l7 >= 0.90,
HTTPS with TLS plaintext >= 0.85. Peers, on the worker: bpftrace copying each call's head (HTTP) and
bpftrace's bare libssl uprobes (HTTPS), see bpftrace_script(). Also runnable alone:  python3 scripts/bench/web.py   (QUICK=1: short)"""
import os, re, shutil, signal, statistics, subprocess as sp, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402  (nginx's port, the e2e lock)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '../..'))
PROCTAP = os.path.join(ROOT, 'bin/proctap')


def ensure_tools():
    missing = [pkg for tool, pkg in (('/usr/sbin/nginx', 'nginx'), ('/usr/bin/wrk', 'wrk'), ('/usr/bin/openssl', 'openssl'),
                                     ('/usr/bin/bpftrace', 'bpftrace')) if not os.path.exists(tool)]
    if missing:
        print(f'installing {" ".join(missing)}', file=sys.stderr)
        sp.run(['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + missing, check=True,
               env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'), stdout=sp.DEVNULL)
    if not os.path.exists('/sys/kernel/tracing/events'):  # bpftrace's tracepoint: probes need tracefs
        sp.run(['mount', '-t', 'tracefs', 'nodev', '/sys/kernel/tracing'], check=True)


def wrk(url, secs):
    """Requests per second, keep-alive, 1 thread and 16 connections (wrk's own count)."""
    out = sp.run(['wrk', '-t1', '-c16', f'-d{secs}s', url], stdout=sp.PIPE, stderr=sp.STDOUT, text=True).stdout
    m = re.search(r'Requests/sec:\s+([\d.]+)', out)
    if not m:
        raise SystemExit(f'wrk: no rate in its output:\n{out}')
    return float(m[1])


def l7_flag():
    help_text = sp.run([PROCTAP, 'attach', '--help'], stdout=sp.PIPE, text=True).stdout
    return ['--l7'] if re.search(r'^\s+--l7\b', help_text, re.M) else ['--l7-data', '4096']


LIBSSL = '/lib/x86_64-linux-gnu/libssl.so.3'
SSL_FUNCS = ('SSL_read', 'SSL_write', 'SSL_read_ex', 'SSL_write_ex')


def bpftrace_script(scheme, worker):
    """The peers: bpftrace doing the least a tool must do to see what nginx says. HTTP: 200 bytes of each
    recv() and of each writev()'s first segment printed (what --l7 copies, per call); HTTPS: uprobes and
    uretprobes on libssl's read/write functions counting calls, nothing copied (the floor of any
    plaintext-from-OpenSSL tool: the traps alone)."""
    if scheme == 'http':
        return ('BEGIN { printf("ready\\n"); } '
                f'tracepoint:syscalls:sys_enter_recvfrom /pid == {worker}/ {{ @b[tid] = args->ubuf; }} '
                f'tracepoint:syscalls:sys_exit_recvfrom /pid == {worker}/ {{ if (args->ret > 0) {{ printf("%r\\n", buf(@b[tid], 200)); }} delete(@b[tid]); }} '
                f'tracepoint:syscalls:sys_enter_writev /pid == {worker}/ {{ printf("%r\\n", buf(((struct iovec *)args->vec)->iov_base, 200)); }}')
    probes = lambda kind: ', '.join(f'{kind}:{LIBSSL}:{f}' for f in SSL_FUNCS)  # noqa: E731
    return f'BEGIN {{ printf("ready\\n"); }} {probes("uprobe")} {{ @calls = count(); }} {probes("uretprobe")} {{ @returns = count(); }}'


def with_bpftrace(scheme, worker, measure):
    """measure() while the bpftrace peer runs on the worker; its output goes to /dev/null through cat."""
    ready = os.path.join(tempfile.mkdtemp(prefix='proctap-bench-bt-'), 'ready')
    script = bpftrace_script(scheme, worker)
    shell = f"bpftrace -q -p {worker} -e '{script}' | (head -1 > {ready}; exec cat > /dev/null)"
    p = sp.Popen(['sh', '-c', shell], env=dict(os.environ, BPFTRACE_STRLEN='200'), stderr=sp.PIPE, text=True, start_new_session=True)
    try:
        for _ in range(600):
            if os.path.exists(ready) and open(ready).read().strip() == 'ready':
                break
            if p.poll() is not None:
                raise SystemExit(f'bpftrace exited: {p.stderr.read()}')
            sp.run(['sleep', '0.1'])
        else:
            raise SystemExit('bpftrace did not attach in 60 s')
        return measure()
    finally:
        os.killpg(p.pid, signal.SIGINT)
        p.wait()
        shutil.rmtree(os.path.dirname(ready), ignore_errors=True)


def one(mode, tmp, secs, flags):
    scheme, traced = mode.split('_', 1) if '_' in mode else (mode, None)
    with server.lock(), server.nginx(tmp, tls=True) as (http, pids, https):
        url = f'http://127.0.0.1:{http}/' if scheme == 'http' else f'https://127.0.0.1:{https}/'
        if traced is None:
            return wrk(url, secs), None
        if traced == 'bpftrace':
            return with_bpftrace(scheme, pids[-1], lambda: wrk(url, secs)), None
        args = {'proctap': [], 'l7': flags, 'tls': [], 'tlsl7': flags}[traced]
        p, err, reader, attached = server.start_attach([PROCTAP, 'attach', '-q', '--no-color'] + args + [str(x) for x in pids])
        if not attached.wait(60):
            p.kill()
            raise SystemExit(f'proctap did not attach: {"".join(err)}')
        rate = wrk(url, secs)
        p.send_signal(signal.SIGINT)
        p.wait()
        reader.join()
        if p.returncode != 0:
            raise SystemExit(f'proctap exited {p.returncode}: {"".join(err[-5:])}')
        return rate, None


MODES = ['http', 'http_proctap', 'http_l7', 'http_bpftrace', 'https', 'https_tls', 'https_tlsl7', 'https_bpftrace']


def run(results, quick):
    ensure_tools()
    reps, secs = (2, 2) if quick else (5, 4)
    flags = l7_flag()
    tmp = tempfile.mkdtemp(prefix='proctap-bench-web-')
    try:
        runs = {m: [] for m in MODES}
        for _ in range(reps):
            for m in MODES:
                runs[m].append(one(m, tmp, secs, flags)[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {m: statistics.median(v) for m, v in runs.items()}
    r = {f'{m}_rps': round(v) for m, v in med.items()}
    r['l7_flag'] = ' '.join(flags)
    r['http_proctap_ratio'] = round(med['http_proctap'] / med['http'], 3)
    r['http_l7_ratio'] = round(med['http_l7'] / med['http'], 3)
    r['https_tls_ratio'] = round(med['https_tls'] / med['https'], 3)
    r['https_tlsl7_ratio'] = round(med['https_tlsl7'] / med['https'], 3)
    r['http_bpftrace_ratio'] = round(med['http_bpftrace'] / med['http'], 3)
    r['https_bpftrace_ratio'] = round(med['https_bpftrace'] / med['https'], 3)
    r['http_l7_over_bpftrace'] = round(med['http_l7'] / med['http_bpftrace'], 3)
    r['https_tlsl7_over_bpftrace'] = round(med['https_tlsl7'] / med['https_bpftrace'], 3)
    r['runs'] = runs
    results['web'] = r


if __name__ == '__main__':
    out = {}
    run(out, os.environ.get('QUICK') == '1')
    for k, v in out['web'].items():
        print(f'  {k:24} {v}')
