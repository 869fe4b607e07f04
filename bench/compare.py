#!/usr/bin/env python3
"""hellod against the project's three C yardsticks (bench/reference/), in one run: the
server pinned to CPU 0, `hello bench` pinned to CPU 1, all on 127.0.0.1. The yardsticks:
mmsg-server.c (recvmmsg, sendmmsg), gso-server.c (the same, replies by UDP GSO) and
spin-server.c (the same, polling 50 us after every batch before it sleeps, where hellod's
--spin-us polls only after a batch of a few), each with batches of 64.

    make bench                      # or: bench/compare.py [--seconds 5] [--runs 3] [--hgrm DIR]
                                    #     [--baseline OLD/.build-static/release] [--workload probes]

Three workloads: throughput (8 flows x 32 in flight, 16-byte names), ping-pong (1 flow x 1
in flight) and probes in step (4 flows x 1 in flight: a few latency probes at once, whose
requests a batch reads together). For each server: replies/s, round trip p50/p99, server CPU
nanoseconds per reply (utime+stime from /proc/PID/stat over the measured window), peak RSS
(VmHWM) and anonymous RSS, idle and under load. Each configuration runs --runs times,
interleaved with the others (every other run in reverse order); the table shows medians,
and the ratios are against the best yardstick's median in each column and workload (the
lowest CPU per reply, the lowest p50; named under the table): is hellod at least as fast
as the best plain C? The machine is shared and noisy: read the ratios, not the absolute
numbers. --workload picks workloads (throughput, ping-pong, probes; repeatable).

--baseline DIR also runs DIR's hellod (an earlier build), and under each table gives each
hellod against it run by run, CPU and p50: the median of the paired ratios with its 95 %
confidence interval (`median_interval`; 6 runs at least), an interval that holds 1.00x
being a run that cannot tell the two builds apart.

--nio also measures a SwiftNIO server (bench/nio/, a package of its own, built into
.build-nio/ by this script only): hello over NIO's DatagramBootstrap, as a user of NIO
would write it, the Swift peer one might pick instead of hellod. Not a yardstick: the
ratios stay against the best C.

--hgrm DIR also writes each server's round trips in each workload as HdrHistogram's
percentile distribution (`hello bench --hgrm`), DIR/WORKLOAD/SERVER.hgrm (the last run's;
names as slug() makes them), which bench/plot.py draws.

With --gro, the GRO table instead (issue 20): hellod (GRO on, its default), hellod
--no-gro, gro-server.c (GRO receive, GSO reply), gso-server.c and mmsg-server.c (plain C),
each with trains (`hello bench --gso 16`: 16 requests a UDP_SEGMENT send) and without, 8
flows x 32 in flight, 16-byte names; CPU per datagram answered against gro-server.c and
against plain C, and against gro-server.c run by run: the median of the paired ratios
with its 95 % confidence interval (`median_interval`; 6 runs at least), an interval that
holds 1.00x being a run that cannot tell that server from gro-server.c. The servers run
in reverse order every other run. On 127.0.0.1, and with --veth through a veth pair
too: the server in one network namespace, `hello bench` in another
(Tests/integration/netns.py's TestNetwork), the server's end with GRO,
rx-udp-gro-forwarding and threaded NAPI, so plain trains coalesce there as well. Needs
root for the namespaces.

    bench/compare.py --gro [--veth] [--seconds 5] [--runs 3]
"""
import argparse
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

from arguments import at_least, seconds
import references

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, ".build-static", "release")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def require(tool):
    """Exits with one line if `tool` is not on PATH, naming the Debian package that has it
    (the tools asked for are their packages' names): a bench that needs it (valgrind, for
    the instruction counts) says so before it starts anything, not as a traceback once the
    first run found no output."""
    if shutil.which(tool) is None:
        sys.exit("%s: %s is missing (apt-get install %s)" % (os.path.basename(sys.argv[0]), tool, tool))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slug(name):
    """A file name for a server or a workload: `hellod --batch 64` is hellod-batch-64,
    `throughput: 8 flows x 32 in flight` is throughput."""
    return re.sub(r"[^a-z0-9.]+", "-", name.split(":")[0].lower()).strip("-")


def median_interval(values, level=0.95):
    """The median of `values` and a confidence interval for it at `level` or more that
    assumes nothing of their distribution: the k-th least and k-th greatest value, k as
    large as the binomial count of values below the true median (p = 1/2) allows. Returns
    (median, low, high, the level reached); low, high and level are None where there are
    too few values for `level` (fewer than 6 for 95 %, 8 for 99 %)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return None, None, None, None
    tail, k = 0.0, 0  # tail: the chance that fewer than k values fall below the median
    while k < n:
        exactly_k = math.comb(n, k) / 2 ** n
        if tail + exactly_k > (1 - level) / 2:
            break
        tail += exactly_k
        k += 1
    median = statistics.median(xs)
    if k == 0:
        return median, None, None, None
    return median, xs[k - 1], xs[n - k], 1 - 2 * tail


def alternating(servers, runs):
    """The servers in the order they run, `runs` times over, every other time in reverse:
    interleaved, so that each run of one met nearly the same moment of the machine as the
    same run of the others, and no server always runs first, or last."""
    for i in range(runs):
        yield from servers if i % 2 == 0 else servers[::-1]


def medians(samples):
    """Each server's median of each figure over its runs."""
    return {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in samples.items()}


def paired_ratios(runs, base_runs, key):
    """The ratios of `key` run by run, run i against run i of the base: the runs are
    interleaved, so the two met the same moment of the machine."""
    return [r[key] / b[key] for r, b in zip(runs, base_runs) if b[key]]


def paired_interval(runs, base_runs, key):
    """`paired_ratios` as `median_interval` reads them: their median and its 95 % interval,
    whether it holds 1.0x being whether the runs can tell the two apart."""
    return median_interval(paired_ratios(runs, base_runs, key))


def paired_text(runs, base_runs, key):
    """`paired_interval` as the tables print it, "-" for the base itself."""
    return "-" if runs is base_runs else interval_text(paired_interval(runs, base_runs, key))


def interval_text(interval):
    """A ratio's `median_interval` as the tables print it: 1.02x [0.97-1.06]."""
    median, low, high, _ = interval
    if median is None:
        return "-"
    return "%.2fx" % median + (" [%.2f-%.2f]" % (low, high) if low is not None else " [too few runs]")


def run_once(server, workload, seconds, hgrm=None, net=None):
    """One run; with `net` (a TestNetwork), the server in its server namespace on
    10.77.0.1, the client in its client namespace."""
    port = free_port() if net is None else 7400
    host = "127.0.0.1" if net is None else net_server_address()
    command = [arg.replace("PORT", str(port)).replace("HOST", host) for arg in server["command"]]
    server_prefix = [] if net is None else net.server_prefix()
    client_prefix = [] if net is None else ["ip", "netns", "exec", net.client_ns]
    proc = subprocess.Popen([*server_prefix, "taskset", "-c", "0", *command], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)  # started and idle
        if proc.poll() is not None:
            sys.exit("%s exited at start" % server["name"])
        idle_anon = status_kb(proc.pid, "RssAnon")
        before = cpu_ticks(proc.pid)
        out = subprocess.run([*client_prefix, "taskset", "-c", "1", os.path.join(RELEASE, "hello"), "bench",
                              "--host", host, "--port", str(port),
                              "--mode", "hello", "--size", "16", "--duration", str(seconds), "--json", *workload["args"],
                              *(["--hgrm", hgrm] if hgrm else [])],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
        after = cpu_ticks(proc.pid)
        report = json.loads(out)
        return {
            "replies_per_second": report["replies_per_second"],
            "p50": report["rtt_us"]["p50"], "p99": report["rtt_us"]["p99"],
            "ns_per_reply": (after - before) * 1e9 / TICK / max(report["answered"], 1),
            "peak_rss_kb": status_kb(proc.pid, "VmHWM"),
            "idle_anon_kb": idle_anon, "load_anon_kb": status_kb(proc.pid, "RssAnon"),
            "lost": report["lost"], "wrong": report["wrong"],
        }
    finally:
        proc.terminate()
        proc.wait()


def build_nio():
    """bench/nio's server, built in release into .build-nio/ (swift build fetches
    swift-nio the first time); its path."""
    scratch = os.path.join(ROOT, ".build-nio")
    # A TMPDIR of the checkout's own, as the Makefile gives swift: the Swift driver leaves
    # its temporary directories behind (swiftlang/swift-driver#2049).
    leftovers = os.path.join(ROOT, ".build-tmp")
    os.makedirs(leftovers, exist_ok=True)
    subprocess.run(["swift", "build", "-c", "release", "--package-path", os.path.join(ROOT, "bench", "nio"),
                    "--scratch-path", scratch], check=True, stdout=sys.stderr, timeout=3600,
                   env=dict(os.environ, TMPDIR=leftovers))
    return os.path.join(scratch, "release", "nio-server")


def net_server_address():
    import netns
    return netns.SERVER


def veth_network():
    """A TestNetwork whose server end coalesces plain trains (as Tests/integration/test_gro.py)."""
    sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
    import netns
    net = netns.TestNetwork()
    net.coalesce_on_server()
    return net


def gro_table(args, built):
    """hellod with and without GRO beside gro-server.c, gso-server.c and plain C, with and
    without trains; on loopback, and with --veth through a veth pair."""
    hellod = os.path.join(RELEASE, "hellod")
    servers = [
        {"name": "hellod", "command": [hellod, "--listen", "HOST:PORT", "--rate-limit", "0"]},
        {"name": "hellod --no-gro", "command": [hellod, "--listen", "HOST:PORT", "--rate-limit", "0", "--no-gro"]},
        {"name": "gro-server.c", "command": [built["gro-server"], "PORT", "64", "hello", "HOST"]},
        {"name": "gso-server.c", "command": [built["gso-server"], "PORT", "64", "hello", "HOST"]},
        {"name": "mmsg-server.c", "command": [built["mmsg-server"], "PORT", "64", "hello", "HOST"]},
    ]
    if args.baseline:
        servers.insert(2, {"name": "baseline hellod", "command": [os.path.join(args.baseline, "hellod"), "--listen",
                                                                   "HOST:PORT", "--rate-limit", "0"]})
    workloads = [
        {"name": "trains of 16: 8 flows x 32 in flight, --gso 16",
         "args": ["--flows", "8", "--window", "32", "--gso", "16"]},
        {"name": "no trains: 8 flows x 32 in flight", "args": ["--flows", "8", "--window", "32"]},
    ]
    paths = [("loopback", None)] + ([("veth pair", "veth")] if args.veth else [])
    print("machine: %s, %d CPUs; %g s per run, %d runs interleaved, medians; load average before: %s" % (
        os.uname().release, os.cpu_count(), args.seconds, args.runs, load_average()))
    for path, kind in paths:
        net = veth_network() if kind == "veth" else None
        try:
            for workload in workloads:
                samples = {s["name"]: [] for s in servers}
                # A veth's ring holds 256 packets: 8 x 32 plain requests in flight would
                # overflow it (losses that are not the server's), so 8 x 16 there.
                load = dict(workload, args=[a if a != "32" or kind != "veth" else "16" for a in workload["args"]])
                for server in alternating(servers, args.runs):
                    samples[server["name"]].append(run_once(server, load, args.seconds, net=net))
                median = medians(samples)
                gro_c, plain_c = median["gro-server.c"]["ns_per_reply"], median["mmsg-server.c"]["ns_per_reply"]
                print("\n%s, %s" % (path, workload["name"].replace("32", "16") if kind == "veth" else workload["name"]))
                print("| server | replies/s | p50 us | CPU ns/datagram | vs gro-server.c | "
                      "vs gro-server.c, paired [95 % CI] | vs plain C | CPU ns/datagram, each run | peak RSS KiB |")
                print("|---|---|---|---|---|---|---|---|---|")
                for name, m in median.items():
                    print("| %s | %.0f | %.1f | %.0f | %.2fx | %s | %.2fx | %s | %d |" % (
                        name, m["replies_per_second"], m["p50"], m["ns_per_reply"], m["ns_per_reply"] / gro_c,
                        paired_text(samples[name], samples["gro-server.c"], "ns_per_reply"),
                        m["ns_per_reply"] / plain_c, " ".join("%.0f" % r["ns_per_reply"] for r in samples[name]),
                        m["peak_rss_kb"]))
                lost = sum(r["lost"] + r["wrong"] for runs in samples.values() for r in runs)
                if lost:
                    print("(lost or wrong replies across these runs: %d)" % lost)
        finally:
            if net is not None:
                net.close()
    print("\nload average after: %s" % load_average())


def idle_cpu_percent(seconds=5):
    proc = subprocess.Popen(["taskset", "-c", "0", os.path.join(RELEASE, "hellod"), "--listen", "127.0.0.1:%d" % free_port()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        before = cpu_ticks(proc.pid)
        time.sleep(seconds)
        return (cpu_ticks(proc.pid) - before) / TICK / seconds * 100
    finally:
        proc.terminate()
        proc.wait()


def load_average():
    return " ".join("%.2f" % x for x in os.getloadavg())


WORKLOADS = [
    {"key": "throughput", "name": "throughput: 8 flows x 32 in flight", "args": ["--flows", "8", "--window", "32"]},
    {"key": "ping-pong", "name": "ping-pong: 1 flow x 1 in flight", "args": ["--flows", "1", "--window", "1"]},
    {"key": "probes", "name": "probes in step: 4 flows x 1 in flight", "args": ["--flows", "4", "--window", "1"]},
]
BASELINE = "baseline hellod --batch 64"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=seconds, default=5)
    parser.add_argument("--runs", type=at_least(1), default=3)
    parser.add_argument("--ablation", action="store_true",
                        help="also hellod with each of GSO, batch coalescing and polling turned off")
    parser.add_argument("--nio", action="store_true",
                        help="also a SwiftNIO server (bench/nio/, built into .build-nio/)")
    parser.add_argument("--hgrm", metavar="DIR",
                        help="also write each server's round trips per workload, DIR/WORKLOAD/SERVER.hgrm (the last run's)")
    parser.add_argument("--gro", action="store_true", help="the GRO table instead (see above)")
    parser.add_argument("--veth", action="store_true", help="with --gro: through a veth pair too (root)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also the hellod in DIR (an earlier build: before and after, in one run, and "
                             "each hellod against it run by run)")
    parser.add_argument("--workload", action="append", choices=[w["key"] for w in WORKLOADS],
                        help="only this workload (repeatable; default: all three)")
    args = parser.parse_args()
    built = references.build()
    if args.gro:
        return gro_table(args, built)
    hellod = os.path.join(RELEASE, "hellod")
    servers = [
        {"name": "hellod --batch 64", "command": [hellod, "--listen", "127.0.0.1:PORT"]},
        {"name": "hellod --batch 1", "command": [hellod, "--listen", "127.0.0.1:PORT", "--batch", "1"]},
    ]
    against_baseline = [s["name"] for s in servers]
    yardsticks = [
        {"name": "mmsg-server.c", "command": [built["mmsg-server"], "PORT", "64", "hello"]},
        {"name": "gso-server.c", "command": [built["gso-server"], "PORT", "64", "hello"]},
        {"name": "spin-server.c, 50 us", "command": [built["spin-server"], "PORT", "64", "hello", "50"]},
    ]
    if args.baseline:
        servers += [{"name": BASELINE,
                     "command": [os.path.join(args.baseline, "hellod"), "--listen", "127.0.0.1:PORT"]}]
    if args.ablation:
        servers += [
            {"name": "hellod --no-gso", "command": [hellod, "--listen", "127.0.0.1:PORT", "--no-gso"]},
            {"name": "hellod --coalesce-us 0", "command": [hellod, "--listen", "127.0.0.1:PORT", "--coalesce-us", "0"]},
            {"name": "hellod --spin-us 0", "command": [hellod, "--listen", "127.0.0.1:PORT", "--spin-us", "0"]},
        ]
    if args.nio:
        servers += [{"name": "SwiftNIO", "command": [build_nio(), "PORT", "hello"]}]
    servers += yardsticks
    workloads = [w for w in WORKLOADS if not args.workload or w["key"] in args.workload]
    print("machine: %s, %d CPUs; %s; %g s per run, %d runs, medians; load average before: %s" % (
        os.uname().release, os.cpu_count(), subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip(),
        args.seconds, args.runs, load_average()))
    for workload in workloads:
        samples = {s["name"]: [] for s in servers}
        directory = args.hgrm and os.path.join(args.hgrm, slug(workload["name"]))
        if directory:
            os.makedirs(directory, exist_ok=True)
        for server in alternating(servers, args.runs):
            hgrm = directory and os.path.join(directory, slug(server["name"]) + ".hgrm")
            samples[server["name"]].append(run_once(server, workload, args.seconds, hgrm))
        median = medians(samples)
        best_cpu = min((y["name"] for y in yardsticks), key=lambda name: median[name]["ns_per_reply"])
        best_p50 = min((y["name"] for y in yardsticks), key=lambda name: median[name]["p50"])
        print("\n%s" % workload["name"])
        print("| server | replies/s | p50 us | p99 us | CPU ns/reply | CPU vs best C | p50 vs best C | peak RSS KiB | anon idle -> load KiB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, m in median.items():
            print("| %s | %.0f | %.1f | %.1f | %.0f | %.2fx | %.2fx | %d | %d -> %d |" % (
                name, m["replies_per_second"], m["p50"], m["p99"], m["ns_per_reply"],
                m["ns_per_reply"] / median[best_cpu]["ns_per_reply"], m["p50"] / median[best_p50]["p50"],
                m["peak_rss_kb"], m["idle_anon_kb"], m["load_anon_kb"]))
        print("best C: CPU per reply %s (%.0f ns), p50 %s (%.1f us)" % (
            best_cpu, median[best_cpu]["ns_per_reply"], best_p50, median[best_p50]["p50"]))
        if args.baseline:
            for name in against_baseline:
                print("%s against the baseline, paired [95 %% CI]: CPU %s, p50 %s" % (name, *(
                    paired_text(samples[name], samples[BASELINE], key) for key in ("ns_per_reply", "p50"))))
        lost = sum(r["lost"] + r["wrong"] for runs in samples.values() for r in runs)
        if lost:
            print("(lost or wrong replies across these runs: %d)" % lost)
    print("\nidle hellod: %.2f%% of a CPU over 5 s" % idle_cpu_percent())
    print("load average after: %s" % load_average())


if __name__ == "__main__":
    main()
