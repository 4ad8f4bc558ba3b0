#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make bench: proctap next to untraced runs and a peer tool, alternating, medians, ratios from one run.
QUICK=1 for a ~1 minute smoke version. Prints a table, writes build/bench.json. See docs/performance.md.
Every run that loads BPF programs holds /tmp/proctap-e2e.lock (flock) so it never overlaps the e2e tests."""
import contextlib, shutil, fcntl, json, os, platform, re, signal, statistics, subprocess as sp, sys, tempfile, threading, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '../..'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402  (step 7: attach on nginx under ab)
import web  # noqa: E402  (step 8: attach on nginx under wrk, HTTP and HTTPS, L7 view)
QUICK = os.environ.get('QUICK') == '1'
REPS = 2 if QUICK else 5
SECS = 1 if QUICK else 4
NCONNS = 10000
PY = '/usr/bin/python3'
WORK = [PY, os.path.join(ROOT, 'scripts/bench/work.py')]
PROCTAP = [os.path.join(ROOT, 'bin/proctap'), 'run', '-q', '--force']
FLOOD = os.path.join(ROOT, 'build/bench-udpflood')
TMP = tempfile.mkdtemp(prefix='proctap-bench-')
med = statistics.median


lock = server.lock  # the e2e lock: no BPF run of the bench overlaps the tests


def sh(cmd, **kw):
    return sp.run(cmd, check=True, stdout=sp.PIPE, text=True, **kw).stdout


def proctap(args, cmd, sample=None):
    """proctap run ARGS -- CMD under the lock; returns (report, command stdout, stats of the proctap process).
    The proctap process is sampled every 50 ms: CPU (utime+stime, ticks) and VmHWM; sample() is called once."""
    rep = os.path.join(TMP, 'report.json')
    st = {'cpu_s': 0.0, 'hwm_kb': 0, 'cpu_samples': []}
    with lock():
        t0 = time.monotonic()
        p = sp.Popen(PROCTAP + ['--json', rep] + args + ['--'] + cmd, stdout=sp.PIPE, text=True)
        def poll():
            tck = os.sysconf('SC_CLK_TCK')
            while p.poll() is None:
                try:
                    f = open(f'/proc/{p.pid}/stat').read().rsplit(')', 1)[1].split()
                    st['cpu_s'] = (int(f[11]) + int(f[12])) / tck
                    st['cpu_samples'].append((time.monotonic(), st['cpu_s']))
                    st['hwm_kb'] = int(re.search(r'VmHWM:\s+(\d+)', open(f'/proc/{p.pid}/status').read())[1])
                except (OSError, TypeError):
                    pass
                time.sleep(0.05)
        th = threading.Thread(target=poll)
        th.start()
        if sample:
            sample()
        out = p.communicate()[0]
        st['wall_s'] = time.monotonic() - t0
        th.join()
    if p.returncode != 0:
        raise SystemExit(f'proctap exited {p.returncode}: {cmd}')
    return json.load(open(rep)), out, st


def cpu_between(samples, t0, t1):
    """CPU seconds of the sampled process between two monotonic times (linear between 50 ms samples)."""
    def at(t):
        prev = (samples[0][0], 0.0) if samples else (t, 0.0)
        for s in samples:
            if s[0] >= t:
                span = s[0] - prev[0]
                return prev[1] + (s[1] - prev[1]) * ((t - prev[0]) / span if span > 0 else 1.0)
            prev = s
        return prev[1]
    return at(t1) - at(t0)


def bpf_prog_stats():
    return {p['id']: p for p in json.loads(sh(['bpftool', '-j', 'prog', 'show']))}


def hook_costs(start, seconds):
    """Per-program mean ns/call of the BPF programs loaded after `start`, over a window of the run."""
    before, new = None, {}
    time.sleep(1.0)
    before = bpf_prog_stats()
    # the L7 view's programs take longer to verify: wait until the traced command runs (up to 5 s more)
    for _ in range(50):
        if any(i not in start and p.get('run_cnt', 0) > 0 for i, p in before.items()):
            break
        time.sleep(0.1)
        before = bpf_prog_stats()
    time.sleep(seconds)
    after = bpf_prog_stats()
    for i, p in after.items():
        if i in start or i not in before:
            continue
        n = p.get('run_cnt', 0) - before[i].get('run_cnt', 0)
        if n > 0:
            ns = p.get('run_time_ns', 0) - before[i].get('run_time_ns', 0)
            new[p.get('name', str(i))] = {'calls': n, 'ns_per_call': round(ns / n, 1)}
    return new


# ---- 1, 2: iperf3 TCP loopback -------------------------------------------------------------------
def iperf(length, results):
    key = 'iperf3_64B' if length else 'iperf3_bulk'
    cli = [os.path.realpath(shutil.which('iperf3')), '-c', '127.0.0.1', '-t', str(SECS + 1), '-J'] + (['-l', str(length)] if length else [])
    bt = ('tracepoint:sock:sock_send_length, tracepoint:sock:sock_recv_length '
          '/pid == cpid && args->ret > 0/ { @bytes[probe] = sum(args->ret); @calls[probe] = count(); }')
    def one(mode, stats_window=None):
        log = os.path.join(TMP, 'iperf.json')
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log)
        srv = sp.Popen(['iperf3', '-s', '-1', '-p', '5299'], stdout=sp.DEVNULL)
        time.sleep(0.2)
        c = cli + ['--logfile', log, '-p', '5299']
        hooks = {}
        if mode == 'untraced':
            sp.run(c, check=True)
        elif mode in ('proctap', 'proctap_l7'):
            start = bpf_prog_stats() if stats_window else None
            smp = (lambda: hooks.update(hook_costs(start, stats_window))) if stats_window else None
            # proctap_l7: the L7 view on (iperf3's flows are not candidates: what every other flow pays)
            proctap(['--l7', '--l7-snaplen', '4096'] if mode == 'proctap_l7' else [], c, smp)
        else:
            with lock():
                start = bpf_prog_stats()
                b = sp.Popen(['bpftrace', '-q', '-e', bt, '-c', ' '.join(c)], stdout=sp.PIPE, stderr=sp.DEVNULL, text=True)
                if stats_window:
                    # bpftrace compiles for a while before it attaches and starts the command
                    while not os.path.exists(log):
                        time.sleep(0.05)
                    hooks.update(hook_costs(start, stats_window))
                b.communicate()
        with contextlib.suppress(sp.TimeoutExpired):
            srv.wait(timeout=5)
        srv.kill()
        bps = json.load(open(log))['end']['sum_received']['bits_per_second']
        return bps, hooks
    runs = {m: [] for m in ('untraced', 'proctap', 'proctap_l7', 'bpftrace')}
    for _ in range(REPS):
        for m in runs:
            runs[m].append(one(m)[0])
    r = {m + '_Mbps': round(med(v) / 1e6, 1) for m, v in runs.items()}
    r['proctap_ratio'] = round(med(runs['proctap']) / med(runs['untraced']), 3)
    r['proctap_l7_ratio'] = round(med(runs['proctap_l7']) / med(runs['untraced']), 3)
    r['bpftrace_ratio'] = round(med(runs['bpftrace']) / med(runs['untraced']), 3)
    if length:  # per-hook cost, separate runs (bpf_stats itself slows every program)
        old = sh(['sysctl', '-n', 'kernel.bpf_stats_enabled']).strip()
        sh(['sysctl', '-qw', 'kernel.bpf_stats_enabled=1'])
        try:
            r['hook_ns_proctap'] = one('proctap', max(SECS - 1, 0.5))[1]
            r['hook_ns_proctap_l7'] = one('proctap_l7', max(SECS - 1, 0.5))[1]
            r['hook_ns_bpftrace'] = one('bpftrace', max(SECS - 1, 0.5))[1]
        finally:
            sh(['sysctl', '-qw', f'kernel.bpf_stats_enabled={old}'])
    results[key] = r


# ---- 3: start-up cost ------------------------------------------------------------------------------
def startup(results):
    n = 5 if QUICK else 10
    pt, ns, ns_err = [], [], None
    for _ in range(n):
        pt.append(proctap([], ['true'])[2]['wall_s'])
    r = {'proctap_true_s': round(med(pt), 3)}
    if sh(['sh', '-c', 'command -v nsntrace || true']).strip():
        fwd = sh(['sysctl', '-n', 'net.ipv4.ip_forward']).strip()
        sh(['sysctl', '-qw', 'net.ipv4.ip_forward=1'])  # nsntrace refuses to start without it
        try:
            for _ in range(n):
                t0 = time.monotonic()
                p = sp.run(['nsntrace', '-o', os.path.join(TMP, 'ns.pcap'), 'true'], capture_output=True, text=True, cwd=TMP)
                if p.returncode == 0:
                    ns.append(time.monotonic() - t0)
                else:
                    ns_err = (p.stdout + p.stderr).strip().splitlines()[-1]
        finally:
            sh(['sysctl', '-qw', f'net.ipv4.ip_forward={fwd}'])
    else:
        ns_err = 'nsntrace not installed'
    r['nsntrace_true_s'] = round(med(ns), 3) if ns else None
    r['nsntrace_failures'] = f'{n - len(ns)}/{n}' + (f' ({ns_err})' if ns_err else '')
    r['ratio_vs_nsntrace'] = round(med(pt) / med(ns), 2) if ns else None
    results['startup'] = r


# ---- 4, 5: UDP floods ----------------------------------------------------------------------------
@contextlib.contextmanager
def receiver(port):
    p = sp.Popen(WORK + ['udp-recv', str(port)], stdout=sp.PIPE, text=True)
    p.stdout.readline()
    try:
        yield
    finally:
        p.terminate()
        p.wait()


def pcap(results):
    port, runs = 5301, {'untraced': [], 'proctap': [], 'tcpdump': []}
    send = WORK + ['udp-send', str(port), str(SECS)]
    captured, dropped, tcpd_capt = [], [], []
    with receiver(port):
        for _ in range(REPS):
            runs['untraced'].append(json.loads(sh(send))['rate'])
            rep, out, _ = proctap(['--pcap', os.path.join(TMP, 'p.pcapng')], send)
            s = json.loads(out)
            runs['proctap'].append(s['rate'])
            captured.append(rep['capture']['packets'] / s['sent'])
            dropped.append(rep['capture']['dropped'])
            td = sp.Popen(['tcpdump', '-i', 'lo', '-w', os.path.join(TMP, 't.pcap'), 'udp port %d' % port],
                          stderr=sp.PIPE, text=True)
            td.stderr.readline()  # "listening on lo ..."
            s = json.loads(sh(send))
            runs['tcpdump'].append(s['rate'])
            td.send_signal(signal.SIGINT)
            err = td.communicate()[1]
            tcpd_capt.append(int(re.search(r'(\d+) packets captured', err)[1]) / s['sent'])
    r = {m + '_pps': round(med(v)) for m, v in runs.items()}
    r['proctap_vs_untraced'] = round(med(runs['proctap']) / med(runs['untraced']), 3)
    r['tcpdump_vs_untraced'] = round(med(runs['tcpdump']) / med(runs['untraced']), 3)
    r['proctap_vs_tcpdump'] = round(med(runs['proctap']) / med(runs['tcpdump']), 3)
    r['proctap_captured_frac'] = round(med(captured), 4)
    r['proctap_dropped_max'] = max(dropped)
    r['tcpdump_captured_frac'] = round(med(tcpd_capt), 4)
    results['pcap_udp64'] = r


def detail(results):
    port, send = 5302, [FLOOD, '5302', str(SECS)]
    rates, lost, cpu, flood_cpu, untraced, lines = [], [], [], [], [], []
    with receiver(port):
        for _ in range(REPS):
            untraced.append(json.loads(sh(send))['rate'])
            # --events /dev/null is refused ("not a regular file"): a file, whose lines are counted
            ev = os.path.join(TMP, 'events.ndjson')
            rep, out, st = proctap(['--events', ev, '--detail'], send)
            lines.append(sum(1 for _ in open(ev)))
            os.unlink(ev)
            s = json.loads(out)
            calls = rep['totals']['udp']['txCalls'] + rep['totals']['udp']['rxCalls']
            n_lost = rep['lost']['records']
            rates.append((calls - rep['lost']['recordsByKind'].get('call', 0)) / s['secs'])
            lost.append(n_lost)
            cpu.append(st['cpu_s'] / st['wall_s'])
            # while the sender floods only (the whole run also holds start-up and tear-down)
            flood_cpu.append(cpu_between(st['cpu_samples'], s['start'], s['start'] + s['secs']) / s['secs'])
    r = {'untraced_sends_per_s': round(med(untraced)), 'records_per_s': round(med(rates)),
         'lost_records_max': max(lost), 'event_lines_per_s': round(med(lines) / SECS), 'tracer_cpu_frac': round(med(cpu), 3),
         'tracer_cpu_frac_per_100k_rps': round(med(cpu) / (med(rates) / 1e5), 3),
         'flood_tracer_cpu_frac': round(med(flood_cpu), 3),
         'flood_tracer_cpu_ms_per_s_per_100k_rps': round(1000 * med(flood_cpu) / (med(rates) / 1e5), 1)}
    results['detail_udp64'] = r


# ---- 6: many connections -------------------------------------------------------------------------
def conns(results):
    port = 5303
    srv = sp.Popen(WORK + ['tcp-server', str(port)], stdout=sp.PIPE, text=True)
    srv.stdout.readline()
    try:
        untraced = json.loads(sh(WORK + ['tcp-conns', str(port), str(NCONNS)]))['secs']
        rep, out, st = proctap([], WORK + ['tcp-conns', str(port), str(NCONNS)])
    finally:
        srv.terminate()
        srv.wait()
    results['conns_10k'] = {'connections': len(rep['connections']), 'untraced_s': round(untraced, 2),
                            'proctap_s': round(json.loads(out)['secs'], 2), 'proctap_vmhwm_mb': round(st['hwm_kb'] / 1024, 1),
                            'lost_records': rep['lost']['records']}


TARGETS = [  # (figure, key path, comparison, target)
    ('1 iperf3 64 B traced/untraced', ('iperf3_64B', 'proctap_ratio'), '>=', 0.92),
    ('1 iperf3 64 B, L7 view on', ('iperf3_64B', 'proctap_l7_ratio'), '>=', 0.85),
    ('2 iperf3 bulk traced/untraced', ('iperf3_bulk', 'proctap_ratio'), '>=', 0.98),
    ('3 proctap run -- true (s)', ('startup', 'proctap_true_s'), '<=', 0.4),
    ('4 --pcap rate vs tcpdump', ('pcap_udp64', 'proctap_vs_tcpdump'), '>=', 1.0),
    ('4 --pcap captured/sent', ('pcap_udp64', 'proctap_captured_frac'), '>=', 0.99),
    ('5 --detail records/s', ('detail_udp64', 'records_per_s'), '>=', 500000),
    ('5 --detail lost records', ('detail_udp64', 'lost_records_max'), '<=', 0),
    ('5 tracer CPU ms/s per 100k rec/s', ('detail_udp64', 'flood_tracer_cpu_ms_per_s_per_100k_rps'), '<=', 100),
    ('6 VmHWM, 10k connections (MB)', ('conns_10k', 'proctap_vmhwm_mb'), '<=', 150),
    ('8 nginx wrk HTTP, attach', ('web', 'http_proctap_ratio'), '>=', 0.95),
    ('8 nginx wrk HTTP, attach --l7', ('web', 'http_l7_ratio'), '>=', 0.90),
    ('8 nginx wrk HTTPS, attach (no uprobes)', ('web', 'https_tls_ratio'), '>=', 0.85),
    ('8 nginx wrk HTTPS, plaintext + --l7', ('web', 'https_tlsl7_ratio'), '>=', 0.85),
    ('8 HTTP --l7 vs bpftrace head copy', ('web', 'http_l7_over_bpftrace'), '>=', 1.0),
]


def server_targets(results):
    """Step 7 (scripts/bench/server.py): attach on nginx under ab, medians; 200k (QUICK: 20k) and 1M."""
    srv = results.get('server', {})
    out = []
    for n, t in srv.items():
        if not isinstance(t, dict) or 'proctap' not in t:
            continue
        m = t['proctap']
        label = f'{int(n) // 1000}k'
        out += [(f'7 attach nginx {label}: VmHWM (MB)', m['vmhwm_mb']['median'], '<=', 150),
                (f'7 attach nginx {label}: SIGINT to exit (s)', m['sigint_to_exit_s']['median'], '<=', 2),
                (f'7 attach nginx {label}: JSON (MB)', m['json_mb']['median'], '<=', 10),
                (f'7 attach nginx {label}: terminal lines', m['terminal_lines']['median'], '<=', 200),
                (f'7 attach nginx {label}: proctap report (s)', m['report_s']['median'], '<=', 2),
                (f'7 attach nginx {label}: bytes exact', 1 if m['all_exact'] else 0, '>=', 1)]
    if 'vmhwm_growth_mb' in srv:
        out.append(('7 VmHWM growth 200k -> 1M (MB)', srv['vmhwm_growth_mb'], '<', 20))
    return out


def main():
    for tool in ('iperf3', 'bpftrace', 'tcpdump'):
        if sp.run(['sh', '-c', f'command -v {tool}'], stdout=sp.DEVNULL).returncode:
            print(f'installing {tool}', file=sys.stderr)
            sp.run(['apt-get', 'install', '-y', '-q', '--no-install-recommends', tool], check=True,
                   env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))
    if not os.path.exists('/sys/kernel/tracing/events'):  # bpftrace's tracepoint: probes need tracefs
        sh(['mount', '-t', 'tracefs', 'nodev', '/sys/kernel/tracing'])
    sh(['gcc', '-O2', '-Wall', '-o', FLOOD, os.path.join(ROOT, 'scripts/bench/udpflood.c')])
    results = {'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'quick': QUICK, 'reps': REPS,
               'seconds': SECS, 'nproc': os.cpu_count(), 'kernel': platform.release()}
    steps = [('iperf3 64 B', lambda: iperf(64, results)), ('iperf3 bulk', lambda: iperf(0, results)),
             ('startup', lambda: startup(results)), ('pcap', lambda: pcap(results)),
             ('detail', lambda: detail(results)), ('10k connections', lambda: conns(results)),
             ('server', lambda: server.run(results, QUICK)), ('web', lambda: web.run(results, QUICK))]
    only, skip = os.environ.get('ONLY'), os.environ.get('SKIP')
    for name, f in steps:
        if (only and only not in name) or (skip and skip in name):
            continue
        t0 = time.monotonic()
        f()
        print(f'  {name}: {time.monotonic() - t0:.0f} s', file=sys.stderr)
    for k, v in results.items():
        if isinstance(v, dict):
            print(f'\n{k}')
            for kk, vv in v.items():
                print(f'  {kk:32} {json.dumps(vv)}')
    print('\ntargets')
    results['targets'] = []
    rows = [(name, results.get(a, {}).get(b), op, tgt) for name, (a, b), op, tgt in TARGETS] + server_targets(results)
    for name, v, op, tgt in rows:
        if v is None:
            continue
        ok = v >= tgt if op == '>=' else v <= tgt if op == '<=' else v < tgt
        results['targets'].append({'figure': name, 'value': v, 'target': f'{op} {tgt}', 'met': ok})
        print(f'  {name:34} {v!s:>10}  target {op} {tgt:<8} {"met" if ok else "MISSED"}')
    os.makedirs(os.path.join(ROOT, 'build'), exist_ok=True)
    with open(os.path.join(ROOT, 'build/bench.json'), 'w') as f:
        json.dump(results, f, indent=2)
    print(f'\nwrote build/bench.json ({"QUICK=1" if QUICK else "full"} run, {REPS} repetitions, medians)')


if __name__ == '__main__':
    try:
        main()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)  # reports, captures and event files of the runs
