#!/usr/bin/env python3
"""Synthetic exporter and history generator for bench/compare.

Value model (docs/design.md, "Synthetic value model"):
  - counters are integers that start at a random value and rise at a
    per-series rate drawn uniformly from 0.01-500 per second;
  - gauges are a slow sine (offset 0-1000, amplitude 1-100, period 1-60 min,
    random phase) plus noise of 1% of the amplitude, printed with 2 decimals;
  - one classic histogram family with 11 buckets, integer bucket counts and a
    `_sum` with 3 decimals;
  - labels host/device/cpu/mode.

Every host is a block of 100 series:
  synth_cpu_seconds_total{host,cpu,mode}          counter, 5 cpus x 9 modes = 45
  synth_device_load{host,device,mode}             gauge,   6 devices x 7 modes = 42
  synth_request_duration_seconds{host}            histogram, 11 buckets + _sum + _count = 13
so 200k series are 2000 hosts and 22k bucket series.

Two commands:

  serve    --series N --targets M [--procs P] [--port-file FILE] [--seed S]
           Serves N series split over M targets, one port per target on
           127.0.0.1 (ports chosen free by the kernel), `/metrics` in the text
           format 0.0.4. The addresses are written to --port-file (one
           host:port a line, written once all ports listen). Targets are
           spread over P worker processes (default: min(2, M)) so rendering
           uses both cores; workers die with the parent (PR_SET_PDEATHSIG).

  history  --series N --hours H --step S --end EPOCH --out FILE.om [--vm-jsonl FILE]
           Writes H hours of the same model for N series at S-second steps
           ending at EPOCH as OpenMetrics (timestamps in seconds, `# EOF`), for
           `promtool tsdb create-blocks-from openmetrics`; with --vm-jsonl also
           the identical samples as VictoriaMetrics' JSON-lines import format.

Standard library only.
"""

import argparse
import ctypes
import http.server
import math
import os
import random
import signal
import socket
import sys
import threading
import time

CPUS = 5
MODES = ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice", "guest"]
DEVICES = ["sda", "sdb", "nvme0n1", "nvme1n1", "dm-0", "dm-1"]
LOAD_MODES = ["read", "write", "discard", "flush", "queue", "busy", "wait"]
LE = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"]
SERIES_PER_HOST = CPUS * len(MODES) + len(DEVICES) * len(LOAD_MODES) + len(LE) + 2  # 100

COUNTER = "synth_cpu_seconds_total"
GAUGE = "synth_device_load"
HIST = "synth_request_duration_seconds"


class Hosts:
    """Parameters of every series of a set of hosts, in exposition order."""

    def __init__(self, names, seed):
        rnd = random.Random(seed)
        self.names = names
        self.counter_labels = []
        self.counter_start = []
        self.counter_rate = []
        self.gauge_labels = []
        self.gauge_offset = []
        self.gauge_amp = []
        self.gauge_omega = []
        self.gauge_phase = []
        self.hist_host = []
        self.hist_start = []
        self.hist_rate = []
        self.hist_frac = []  # cumulative bucket fractions, last is 1.0
        self.hist_mean = []
        for h in names:
            for c in range(CPUS):
                for m in MODES:
                    self.counter_labels.append(f'host="{h}",cpu="{c}",mode="{m}"')
                    self.counter_start.append(rnd.randrange(0, 10**9))
                    self.counter_rate.append(rnd.uniform(0.01, 500.0))
            for d in DEVICES:
                for m in LOAD_MODES:
                    self.gauge_labels.append(f'host="{h}",device="{d}",mode="{m}"')
                    self.gauge_offset.append(rnd.uniform(0, 1000))
                    self.gauge_amp.append(rnd.uniform(1, 100))
                    self.gauge_omega.append(2 * math.pi / rnd.uniform(60, 3600))
                    self.gauge_phase.append(rnd.uniform(0, 2 * math.pi))
            self.hist_host.append(h)
            self.hist_start.append(rnd.randrange(0, 10**7))
            self.hist_rate.append(rnd.uniform(1, 500))
            # A log-normal-ish latency profile centred per host.
            centre = rnd.uniform(1.0, 6.0)  # bucket index of the median
            cdf = [1 / (1 + math.exp(-(i - centre) * 1.3)) for i in range(len(LE) - 1)]
            self.hist_frac.append(cdf + [1.0])
            self.hist_mean.append(rnd.uniform(0.02, 1.5))
        # Unit normal noise, indexed at a random offset per render: cheap and
        # still different on every scrape.
        n = len(self.gauge_labels)
        self.noise = [rnd.gauss(0, 1) * 0.01 for _ in range(max(n, 1) * 2)]
        self.gauge_noise_amp = self.gauge_amp
        self.rnd = rnd

    @property
    def series(self):
        return len(self.counter_labels) + len(self.gauge_labels) + len(self.hist_host) * (len(LE) + 2)

    # ---- values at time t (seconds since the model's epoch) ----
    def counter_values(self, dt):
        return [int(s + r * dt) for s, r in zip(self.counter_start, self.counter_rate)]

    def gauge_values(self, t, noise_offset):
        n = len(self.gauge_labels)
        nz = self.noise[noise_offset : noise_offset + n]
        sin = math.sin
        return [
            o + a * (sin(w * t + p) + z)
            for o, a, w, p, z in zip(self.gauge_offset, self.gauge_amp, self.gauge_omega, self.gauge_phase, nz)
        ]

    def hist_values(self, dt):
        """Per host: 11 cumulative bucket counts, then count, then sum."""
        out = []
        for s, r, fr, mean in zip(self.hist_start, self.hist_rate, self.hist_frac, self.hist_mean):
            count = int(s + r * dt)
            out.append(([int(count * f) for f in fr], count, count * mean))
        return out


# ---------------------------------------------------------------------------
# serve


class Target:
    def __init__(self, index, hosts, epoch):
        self.hosts = hosts
        self.epoch = epoch
        self.lock = threading.Lock()
        parts = [f"# HELP {COUNTER} Synthetic CPU time.\n# TYPE {COUNTER} counter\n"]
        parts += [f"{COUNTER}{{{lab}}} %d\n" for lab in hosts.counter_labels]
        parts.append(f"# HELP {GAUGE} Synthetic device load.\n# TYPE {GAUGE} gauge\n")
        parts += [f"{GAUGE}{{{lab}}} %.2f\n" for lab in hosts.gauge_labels]
        parts.append(f"# HELP {HIST} Synthetic request latency.\n# TYPE {HIST} histogram\n")
        for h in hosts.hist_host:
            parts += [f'{HIST}_bucket{{host="{h}",le="{le}"}} %d\n' for le in LE]
            parts.append(f'{HIST}_sum{{host="{h}"}} %.3f\n')
            parts.append(f'{HIST}_count{{host="{h}"}} %d\n')
        self.template = "".join(parts)

    def render(self):
        now = time.time()
        dt = now - self.epoch
        h = self.hosts
        vals = h.counter_values(dt)
        vals += h.gauge_values(now, h.rnd.randrange(len(h.gauge_labels) + 1))
        for buckets, count, total in h.hist_values(dt):
            vals += buckets
            vals.append(total)
            vals.append(count)
        return (self.template % tuple(vals)).encode()


def make_handler(target):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = target.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def host_names(target, count):
    return [f"t{target:03d}-h{i:04d}" for i in range(count)]


def cmd_serve(a):
    if a.series < 1 or a.targets < 1:
        sys.exit("--series and --targets must be positive")
    per_target = a.series / a.targets
    hosts_per_target = max(1, round(per_target / SERIES_PER_HOST))
    epoch = time.time()
    socks = []
    for _ in range(a.targets):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        socks.append(s)
    procs = max(1, min(a.procs or min(2, a.targets), a.targets))
    children = []

    def run_worker(indices):
        servers = []
        for i in indices:
            target = Target(i, Hosts(host_names(i, hosts_per_target), a.seed * 1000003 + i), epoch)
            srv = Server(("127.0.0.1", 0), make_handler(target), bind_and_activate=False)
            srv.socket.close()
            srv.socket = socks[i]
            srv.server_address = socks[i].getsockname()
            servers.append(srv)
        threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
        for t in threads:
            t.start()
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        os._exit(0)

    groups = [list(range(k, a.targets, procs)) for k in range(procs)]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    for g in groups:
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            run_worker(g)
        children.append(pid)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()  # the workers hold them
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            for p in ports:
                f.write(f"127.0.0.1:{p}\n")
        os.replace(tmp, a.port_file)
    else:
        for p in ports:
            print(f"127.0.0.1:{p}", flush=True)
    print(
        f"synthetic exporter: {a.targets} targets x {hosts_per_target} hosts x {SERIES_PER_HOST} series"
        f" = {a.targets * hosts_per_target * SERIES_PER_HOST} series, {procs} worker process(es)",
        file=sys.stderr,
        flush=True,
    )
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


# ---------------------------------------------------------------------------
# history


def fmt_ts(t):
    return f"{t:.0f}" if t == int(t) else f"{t:.3f}"


def cmd_history(a):
    hosts_n = max(1, round(a.series / SERIES_PER_HOST))
    names = [f"hist-h{i:05d}" for i in range(hosts_n)]
    steps = int(a.hours * 3600 // a.step)
    end = a.end - (a.end % a.step)
    times = [end - (steps - 1 - k) * a.step for k in range(steps)]
    epoch = times[0] - 3600  # counters have been running for an hour before the history starts
    ts_s = [fmt_ts(t) for t in times]
    ts_ms = ",".join(str(int(t * 1000)) for t in times)
    om = open(a.out, "w", buffering=1 << 20)
    vm = open(a.vm_jsonl, "w", buffering=1 << 20) if a.vm_jsonl else None
    # Imported history carries no job/instance labels: the same series in every system.
    samples = 0
    # Generate in chunks of hosts, so memory stays bounded; families must not
    # interleave in OpenMetrics, so each family is a separate pass over the hosts.
    chunk = 50

    def host_chunks():
        for i in range(0, hosts_n, chunk):
            yield Hosts(names[i : i + chunk], a.seed * 7919 + i)

    om.write(f"# HELP {COUNTER[:-6]} Synthetic CPU time.\n# TYPE {COUNTER[:-6]} counter\n")
    for h in host_chunks():
        series_vals = [[] for _ in h.counter_labels]
        for t in times:
            for j, v in enumerate(h.counter_values(t - epoch)):
                series_vals[j].append(v)
        for lab, vals in zip(h.counter_labels, series_vals):
            head = f"{COUNTER}{{{lab}}} "
            om.write("".join([f"{head}{v} {ts}\n" for v, ts in zip(vals, ts_s)]))
            if vm:
                vm.write(
                    '{"metric":{"__name__":"%s",%s},"values":[%s],"timestamps":[%s]}\n'
                    % (COUNTER, lab_json(lab), ",".join(map(str, vals)), ts_ms)
                )
            samples += len(vals)
    om.write(f"# HELP {GAUGE} Synthetic device load.\n# TYPE {GAUGE} gauge\n")
    for h in host_chunks():
        n = len(h.gauge_labels)
        series_vals = [[] for _ in range(n)]
        for t in times:
            for j, v in enumerate(h.gauge_values(t, h.rnd.randrange(n + 1))):
                series_vals[j].append(f"{v:.2f}")
        for lab, vals in zip(h.gauge_labels, series_vals):
            head = f"{GAUGE}{{{lab}}} "
            om.write("".join([f"{head}{v} {ts}\n" for v, ts in zip(vals, ts_s)]))
            if vm:
                vm.write(
                    '{"metric":{"__name__":"%s",%s},"values":[%s],"timestamps":[%s]}\n'
                    % (GAUGE, lab_json(lab), ",".join(vals), ts_ms)
                )
            samples += len(vals)
    om.write(f"# HELP {HIST} Synthetic request latency.\n# TYPE {HIST} histogram\n")
    for h in host_chunks():
        per_time = [h.hist_values(t - epoch) for t in times]
        for k, host in enumerate(h.hist_host):
            lines = []
            for ts, hv in zip(ts_s, per_time):
                buckets, count, total = hv[k]
                for le, b in zip(LE, buckets):
                    lines.append(f'{HIST}_bucket{{host="{host}",le="{le}"}} {b} {ts}\n')
                lines.append(f'{HIST}_count{{host="{host}"}} {count} {ts}\n')
                lines.append(f'{HIST}_sum{{host="{host}"}} {total:.3f} {ts}\n')
            om.write("".join(lines))
            samples += len(times) * (len(LE) + 2)
            if vm:
                for i, le in enumerate(LE):
                    vals = ",".join(str(hv[k][0][i]) for hv in per_time)
                    vm.write(
                        '{"metric":{"__name__":"%s_bucket","host":"%s","le":"%s"},"values":[%s],"timestamps":[%s]}\n'
                        % (HIST, host, le, vals, ts_ms)
                    )
                vals = ",".join(str(hv[k][1]) for hv in per_time)
                vm.write(
                    '{"metric":{"__name__":"%s_count","host":"%s"},"values":[%s],"timestamps":[%s]}\n'
                    % (HIST, host, vals, ts_ms)
                )
                vals = ",".join(f"{hv[k][2]:.3f}" for hv in per_time)
                vm.write(
                    '{"metric":{"__name__":"%s_sum","host":"%s"},"values":[%s],"timestamps":[%s]}\n'
                    % (HIST, host, vals, ts_ms)
                )
    om.write("# EOF\n")
    om.close()
    if vm:
        vm.close()
    series = hosts_n * SERIES_PER_HOST
    print(
        f"history: {series} series x {steps} points = {samples} samples, {times[0]:.0f}..{times[-1]:.0f}",
        file=sys.stderr,
    )
    print(f"{series} {steps} {samples} {times[0]:.3f} {times[-1]:.3f}")


def lab_json(lab):
    # 'host="a",cpu="0"' -> '"host":"a","cpu":"0"' (label values here never hold quotes or commas)
    return ",".join('"%s":%s' % tuple(kv.split("=", 1)) for kv in lab.split(","))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve N series across M targets")
    s.add_argument("--series", type=int, default=200000)
    s.add_argument("--targets", type=int, default=10)
    s.add_argument("--procs", type=int, default=0, help="worker processes (default min(2, targets))")
    s.add_argument("--port-file")
    s.add_argument("--seed", type=int, default=1)
    h = sub.add_parser("history", help="write OpenMetrics history (and VictoriaMetrics JSON lines)")
    h.add_argument("--series", type=int, default=20000)
    h.add_argument("--hours", type=float, default=2.0)
    h.add_argument("--step", type=int, default=15)
    h.add_argument("--end", type=float, default=None, help="epoch seconds of the last sample (default: now)")
    h.add_argument("--out", required=True)
    h.add_argument("--vm-jsonl")
    h.add_argument("--seed", type=int, default=2)
    a = p.parse_args()
    if a.cmd == "serve":
        cmd_serve(a)
    else:
        if a.end is None:
            a.end = time.time()
        cmd_history(a)


if __name__ == "__main__":
    main()
