#!/usr/bin/env python3
"""PERFORMANCE.md's plots, drawn from one run of the benches: hellod's round-trip latency
spectrum beside the C yardsticks' (throughput and ping-pong, bench/compare.py), and the
chat relay's CPU per delivery and p50 against room size beside relay.c's (bench/chat.py).

    make plots                      # = make build references, then bench/plot.py $(PLOT_ARGS)
    bench/plot.py [--seconds 4] [--runs 3]   # run both benches, then draw
    bench/plot.py --draw-only       # draw the last run's data again

The benches run with --runs and --seconds per case (the chat's points are medians of the
runs; a spectrum is the last run's), writing .hgrm files (`hello bench --hgrm`) and
bench/chat.py's --json into .build-plot/data/; the plots go to docs/plots/
(--out), each captioned with the command, the date and the machine. matplotlib comes from
PyPI into a virtual environment of the bench's own, .build-plot/venv (made on first use;
./test.sh never makes it): this python3 may not be Debian's, so Debian's
python3-matplotlib need not import here.

The x axis of a latency spectrum is HdrHistogram's: 1/(1 - percentile) on a log scale, so
that 90 %, 99 %, 99.9 % and 99.99 % are evenly spaced.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

from arguments import at_least, seconds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRATCH = os.path.join(ROOT, ".build-plot")
VENV = os.path.join(SCRATCH, "venv")
DATA = os.path.join(SCRATCH, "data")
OUT = os.path.join(ROOT, "docs", "plots")
MATPLOTLIB = "matplotlib==3.11.2"
ROOM_SIZES = "2,8,32,64"

# The contenders' names as the benches print them, by the file names they get (compare.slug()).
LABELS = {
    "hellod-batch-64": "hellod --batch 64",
    "hellod-batch-1": "hellod --batch 1",
    "mmsg-server.c": "mmsg-server.c",
    "gso-server.c": "gso-server.c",
    "spin-server.c-50-us": "spin-server.c, 50 us",
    "swiftnio": "SwiftNIO (bench/nio)",
    "hellod-chat": "hellod chat",
    "hellod-chat-chat-fanout-us-500": "hellod chat, --chat-fanout-us 500",
    "relay.c": "relay.c",
}
WORKLOADS = {"throughput": "throughput: 8 flows x 32 in flight", "ping-pong": "ping-pong: 1 flow x 1 in flight"}


def venv_python():
    """The virtual environment's python, with matplotlib; made on first use."""
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=300)
    if subprocess.run([python, "-c", "import matplotlib"], capture_output=True).returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "--quiet", MATPLOTLIB], check=True, timeout=900)
    return python


def run_benches(seconds, runs, nio):
    """Both benches, once, into DATA; their tables to DATA/*.txt and to the terminal."""
    os.makedirs(DATA, exist_ok=True)
    for name in os.listdir(DATA):
        if name.endswith(".txt") or name.endswith(".json"):
            os.remove(os.path.join(DATA, name))
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    benches = [
        ("compare.txt", [os.path.join(ROOT, "bench", "compare.py"), "--seconds", str(seconds), "--runs", str(runs),
                         "--hgrm", os.path.join(DATA, "requests"), *(["--nio"] if nio else [])]),
        ("chat.txt", [os.path.join(ROOT, "bench", "chat.py"), "--seconds", str(seconds), "--runs", str(runs), "--no-rmax",
                      "--members", ROOM_SIZES, "--json", os.path.join(DATA, "chat.json"),
                      "--hgrm", os.path.join(DATA, "chat")]),
    ]
    for name, command in benches:
        print("$ " + " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in command), flush=True)
        out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        sys.stdout.write(out.stdout)
        with open(os.path.join(DATA, name), "w") as f:
            f.write(out.stdout)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    with open(os.path.join(DATA, "run.json"), "w") as f:
        json.dump({"command": "bench/plot.py --seconds %g --runs %d%s" % (seconds, runs, " --nio" if nio else ""),
                   "runs": runs, "started": started.strftime("%Y-%m-%d %H:%M UTC"),
                   "commit": commit, "cpus": os.cpu_count(), "load_before": load_before,
                   "load_after": os.getloadavg()}, f, indent=1)


def read_hgrm(path):
    """[(percentile 0-1, value in microseconds)] of a .hgrm file's rows."""
    rows = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and not line.startswith("#") and fields[0] != "Value":
                rows.append((float(fields[1]), float(fields[0])))
    return rows


def caption(run):
    return "%s, %s (commit %s), on a shared %d-core VM: load average %.2f before, %.2f after" % (
        run["command"], run["started"], run["commit"], run["cpus"], run["load_before"][0], run["load_after"][0])


def style(name):
    """hellod's lines solid and thick, SwiftNIO's dash-dotted, the C references' dashed."""
    if name.startswith("hellod"):
        return {"linewidth": 2.2, "linestyle": "-"}
    if name.startswith("swiftnio"):
        return {"linewidth": 1.8, "linestyle": "-."}
    return {"linewidth": 1.4, "linestyle": "--"}


def draw(out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FixedFormatter, FuncFormatter

    with open(os.path.join(DATA, "run.json")) as f:
        run = json.load(f)
    os.makedirs(out, exist_ok=True)
    made = []
    ticks = [1, 2, 10, 100, 1000, 10000]
    tick_labels = ["0%", "50%", "90%", "99%", "99.9%", "99.99%"]
    for slug, title in WORKLOADS.items():
        directory = os.path.join(DATA, "requests", slug)
        names = sorted((n[:-len(".hgrm")] for n in os.listdir(directory) if n.endswith(".hgrm")),
                       key=lambda n: (not n.startswith("hellod"), n))
        fig, ax = plt.subplots(figsize=(9, 5.5))
        for name in names:
            rows = [(1 / (1 - p), v) for p, v in read_hgrm(os.path.join(directory, name + ".hgrm")) if p <= 0.9999]
            ax.plot([x for x, _ in rows], [v for _, v in rows], label=LABELS.get(name, name), **style(name))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1, 10000)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter(tick_labels))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: "%g" % y))
        ax.set_xlabel("percentile (log scale of 1/(1 - percentile))")
        ax.set_ylabel("round trip, microseconds (log scale)")
        peers = "the C yardsticks and SwiftNIO" if "swiftnio" in names else "the C yardsticks"
        ax.set_title("hello bench round trips, %s: hellod, %s (the last run)" % (title, peers), fontsize=11)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper left")
        fig.text(0.01, 0.01, caption(run), fontsize=7, color="0.35")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        path = os.path.join(out, "latency-%s.png" % slug)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)

    with open(os.path.join(DATA, "chat.json")) as f:
        chat = json.load(f)
    cases = sorted(chat["cases"], key=lambda c: c["members"])
    members = [c["members"] for c in cases]
    relays = list(cases[0]["relays"])
    fig, (cpu, p50) = plt.subplots(1, 2, figsize=(11, 5))
    for relay in relays:
        cpu.plot(members, [c["relays"][relay]["ns_per_delivery"] for c in cases], marker="o", label=relay,
                 **style(relay))
        p50.plot(members, [c["relays"][relay]["p50"] for c in cases], marker="o", label=relay, **style(relay))
    # A relay that falls behind queues for milliseconds: p50 on a log scale keeps the rest readable.
    p50.set_yscale("log")
    p50.yaxis.set_major_formatter(FuncFormatter(lambda y, _: "%g" % y))
    cpu.set_ylim(bottom=0)
    for ax, label in ((cpu, "server CPU per delivery, ns"), (p50, "latency p50, microseconds (send to receipt, log scale)")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(members))
        ax.xaxis.set_major_formatter(FixedFormatter([str(m) for m in members]))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.set_xlabel("members in the room (log scale)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    cpu.legend(loc="upper right")
    fig.suptitle("The chat relay at 5000 messages/s of 64 bytes, by room size: hellod and relay.c (medians of %d runs)"
                 % run.get("runs", 1))
    fig.text(0.01, 0.01, caption(run), fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = os.path.join(out, "chat-room-size.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(path)
    for path in made:
        print("drew " + os.path.relpath(path, ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=seconds, default=4, help="seconds per case (default 4)")
    parser.add_argument("--runs", type=at_least(1), default=3, help="runs of each case (default 3)")
    parser.add_argument("--nio", action="store_true",
                        help="also a SwiftNIO server in the latency spectra (bench/compare.py --nio)")
    parser.add_argument("--draw-only", action="store_true", help="draw the last run's data again, no bench")
    parser.add_argument("--out", default=OUT, help="where the PNGs go (default docs/plots)")
    parser.add_argument("--draw", action="store_true", help=argparse.SUPPRESS)  # in the venv's python
    args = parser.parse_args()
    if args.draw:
        draw(args.out)
        return
    python = venv_python()  # first: a failed install costs no bench run
    if not args.draw_only:
        run_benches(args.seconds, args.runs, args.nio)
    subprocess.run([python, os.path.abspath(__file__), "--draw", "--out", args.out], check=True)


if __name__ == "__main__":
    main()
