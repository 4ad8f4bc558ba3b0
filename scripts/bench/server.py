#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make bench, step "server": proctap attach on a real nginx (Debian package, own config in a temp dir,
loopback only) while ab opens N short connections (no keep-alive); then SIGINT. Measures proctap's peak
RSS (VmHWM), the time from SIGINT to its exit (report written), the JSON size, the terminal report's
line count and `proctap report FILE` time, and checks the bytes against ab's own count.

`PROCTAP_OLD=DIR` runs the same with the proctap checkout in DIR too (the previous release, e.g. a
worktree of it), next to this one, alternating. Also runnable alone:
  python3 scripts/bench/server.py [N ...]     (QUICK=1: 20 000 connections, 1 repetition)"""
import contextlib, fcntl, json, os, re, shutil, signal, socket, statistics, subprocess as sp, sys, tempfile, threading, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '../..'))
NGINX = '/usr/sbin/nginx'


@contextlib.contextmanager
def lock():
    with open('/tmp/proctap-e2e.lock', 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_tools():
    missing = [pkg for tool, pkg in (('/usr/sbin/nginx', 'nginx-light'), ('/usr/bin/ab', 'apache2-utils')) if not os.path.exists(tool)]
    if missing:
        print(f'installing {" ".join(missing)}', file=sys.stderr)
        sp.run(['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + missing, check=True,
               env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'), stdout=sp.DEVNULL)


def free_port():
    """A free port below the ephemeral range (a service's port, as nginx would have)."""
    lo = int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0])
    for port in range(max(1024, lo - 10000), lo):
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind(('127.0.0.1', port))
            return port
    raise SystemExit('no free port below the ephemeral range')


@contextlib.contextmanager
def nginx(tmp, tls=False):
    """One master and one worker on 127.0.0.1:PORT answering every request with 100 bytes; with tls, also
    HTTPS (TLS 1.3, a certificate made here) on a second port. Yields (port, pids, tls_port or None)."""
    port = free_port()
    tls_port = None
    tls_conf = ''
    if tls:
        with socket.socket() as hold:  # keep the first port taken while the second is chosen
            hold.bind(('127.0.0.1', port))
            tls_port = free_port()
        key, crt = os.path.join(tmp, 'key.pem'), os.path.join(tmp, 'crt.pem')
        if not os.path.exists(crt):
            sp.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '1',
                    '-subj', '/CN=bench.test'], check=True, stdout=sp.DEVNULL, stderr=sp.DEVNULL)
        tls_conf = f"listen 127.0.0.1:{tls_port} ssl backlog=4096; ssl_certificate {crt}; ssl_certificate_key {key}; ssl_protocols TLSv1.3;"
    conf = os.path.join(tmp, 'nginx.conf')
    with open(conf, 'w') as f:
        f.write(f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        {tls_conf}
        location / {{ return 200 "{'x' * 99}\\n"; }}
    }}
}}
""")
    master = sp.Popen([NGINX, '-e', os.path.join(tmp, 'error.log'), '-c', conf, '-p', tmp], stderr=sp.DEVNULL)
    for p in [port] + ([tls_port] if tls_port else []):
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', p), timeout=0.2):
                break
            time.sleep(0.05)
    workers = [int(p) for p in sp.run(['pgrep', '-P', str(master.pid)], stdout=sp.PIPE, text=True).stdout.split()]
    try:
        yield port, [master.pid] + workers, tls_port
    finally:
        master.send_signal(signal.SIGQUIT)
        try:
            master.wait(timeout=10)
        except sp.TimeoutExpired:
            master.kill()
            master.wait()


def ab(port, n):
    """ab without keep-alive; returns (requests completed, bytes received by ab, seconds)."""
    out = sp.run(['ab', '-q', '-r', '-n', str(n), '-c', '32', f'http://127.0.0.1:{port}/'], stdout=sp.PIPE, stderr=sp.STDOUT, text=True).stdout
    done = int(re.search(r'Complete requests:\s+(\d+)', out)[1])
    failed = int(re.search(r'Failed requests:\s+(\d+)', out)[1])
    total = int(re.search(r'Total transferred:\s+(\d+)', out)[1])
    secs = float(re.search(r'Time taken for tests:\s+([\d.]+)', out)[1])
    return done, failed, total, secs


def start_attach(cmd):
    """Starts `proctap attach` (cmd) with its stderr read on a thread: (process, stderr lines so far, the
    reader thread, an Event set once it says "attached to")."""
    p = sp.Popen(cmd, stdout=sp.DEVNULL, stderr=sp.PIPE, text=True)
    lines = []
    attached = threading.Event()

    def read_err():
        for line in p.stderr:
            lines.append(line)
            if 'attached to' in line:
                attached.set()
    reader = threading.Thread(target=read_err)
    reader.start()
    return p, lines, reader, attached


def one(checkout, n, tmp):
    """proctap attach (from `checkout`) on a fresh nginx while ab opens n connections."""
    rep = os.path.join(tmp, 'server.json')
    with contextlib.suppress(FileNotFoundError):
        os.unlink(rep)
    st = {'hwm_kb': 0, 'cpu_s': 0.0}
    with lock(), nginx(tmp) as (port, pids, _):
        p, err_lines, reader, attached = start_attach([os.path.join(checkout, 'bin/proctap'), 'attach', '--json', rep, '--no-color', '--force'] + [str(x) for x in pids])
        def poll():
            while p.poll() is None:
                with contextlib.suppress(OSError, TypeError, IndexError):
                    st['hwm_kb'] = int(re.search(r'VmHWM:\s+(\d+)', open(f'/proc/{p.pid}/status').read())[1])
                    f = open(f'/proc/{p.pid}/stat').read().rsplit(')', 1)[1].split()
                    st['cpu_s'] = (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')
                time.sleep(0.05)
        poller = threading.Thread(target=poll)
        poller.start()
        if not attached.wait(60):
            p.kill()
            raise SystemExit(f'proctap did not attach: {"".join(err_lines)}')
        done, failed, total, secs = ab(port, n)
        time.sleep(0.5)  # the last records reach the ring buffer
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        p.wait()
        stop_s = time.monotonic() - t0
        reader.join()
        poller.join()
    if p.returncode != 0:
        raise SystemExit(f'proctap exited {p.returncode}: {"".join(err_lines[-5:])}')
    text = ''.join(err_lines)
    # the terminal report: from its first line ("proctap VERSION · attach ...") to the end
    start = text.find('proctap ', text.find(': detaching'))
    report_lines = text[start:].rstrip('\n').count('\n') + 1 if start >= 0 else 0
    t1 = time.monotonic()
    sp.run([os.path.join(checkout, 'bin/proctap'), 'report', rep], stdout=sp.DEVNULL, check=True)
    report_s = time.monotonic() - t1
    r = json.load(open(rep))
    conns = sum(e['connections'] for e in r['endpoints'])
    return {'connections': done, 'ab_failed': failed, 'ab_secs': round(secs, 2), 'ab_bytes': total,
            'proctap_tx_bytes': r['totals']['tcp']['txBytes'], 'exact': r['totals']['tcp']['txBytes'] == total,
            'report_connections': conns, 'lost_records': r['lost']['records'],
            'vmhwm_mb': round(st['hwm_kb'] / 1024, 1), 'cpu_s': round(st['cpu_s'], 1), 'sigint_to_exit_s': round(stop_s, 2),
            'json_mb': round(os.path.getsize(rep) / 1e6, 2), 'terminal_lines': report_lines, 'report_s': round(report_s, 2),
            'progress_line': 'finishing the report' in text}


def summary(runs):
    keys = ['vmhwm_mb', 'cpu_s', 'sigint_to_exit_s', 'json_mb', 'terminal_lines', 'report_s', 'ab_secs']
    out = {k: {'median': statistics.median([x[k] for x in runs]), 'min': min(x[k] for x in runs), 'max': max(x[k] for x in runs)} for k in keys}
    out['runs'] = runs
    out['all_exact'] = all(x['exact'] for x in runs)
    return out


def run(results, quick, sizes=None, reps=None):
    ensure_tools()
    sizes = sizes or ([20000] if quick else [200000, 1000000])
    reps = reps or (1 if quick else 3)
    old = os.environ.get('PROCTAP_OLD')
    tmp = tempfile.mkdtemp(prefix='proctap-bench-server-')
    try:
        out = {}
        for n in sizes:
            new_runs, old_runs = [], []
            # 1M connections take minutes each on 2 cores: one repetition fewer there
            for _ in range(reps if n <= 200000 else max(1, reps - 1)):
                new_runs.append(one(ROOT, n, tmp))
                print(f'    server {n}: {json.dumps(new_runs[-1])}', file=sys.stderr)
                if old and n <= int(os.environ.get('PROCTAP_OLD_MAX', '200000')):
                    old_runs.append(one(old, n, tmp))
                    print(f'    server {n} (old): {json.dumps(old_runs[-1])}', file=sys.stderr)
            out[str(n)] = {'proctap': summary(new_runs), **({'old': summary(old_runs)} if old_runs else {})}
        if len(sizes) >= 2:
            a, b = out[str(sizes[0])]['proctap']['vmhwm_mb']['median'], out[str(sizes[-1])]['proctap']['vmhwm_mb']['median']
            out['vmhwm_growth_mb'] = round(b - a, 1)
        results['server'] = out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    res = {}
    ns = [int(a) for a in sys.argv[1:]] or None
    run(res, os.environ.get('QUICK') == '1', ns, int(os.environ['REPS']) if 'REPS' in os.environ else None)
    print(json.dumps(res, indent=2))
