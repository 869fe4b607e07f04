"""hellod under bad input and abuse: never a reflector, never a loop partner, never a
silent loss. Every test checks the stop line's accounting: read = replied + drops."""
import json
import signal
import socket
import time

from harness import (HELLOD, Hellod, TestCase, counters, hello, rss_anon_kb, spoof, wait_until_drained,
                     UDPTOOL)
from netns import SERVER, Loopback, TestNetwork


class SourcePorts(TestCase):
    def test_port_0_and_privileged_ports_are_refused_and_counted(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            for port in (0, 7, 19, 53, 123, 1023):
                spoof("127.0.0.1", port, "127.0.0.1", d.port, "reflect me")
            spoof("127.0.0.1", 1024, "127.0.0.1", d.port, "fine")
            wait_until_drained(d.proc.pid, d.port)
            found = counters(d.stop()[1])
        self.assertEqual((found["read"], found["replied"], found["privileged-source-port"]), (7, 1, 6))
        self.assertBalanced(found)

    def test_privileged_ports_can_be_allowed(self):
        # Port 1023 in a network of the test's own, never the host's.
        with Loopback() as net, Hellod("--listen", "127.0.0.1:0", "--allow-privileged-ports",
                                       command=[*net.prefix(), HELLOD]) as d:
            with net.socket(socket.AF_INET) as client:
                client.bind(("127.0.0.1", 1023))  # root may
                client.settimeout(2)
                client.sendto(b"old school", ("127.0.0.1", d.port))
                self.assertEqual(client.recv(100), b"Hello, old school!")

    def test_two_hellods_on_one_port_do_not_answer_each_other(self):
        port = 9999  # in a network of the test's own: free, and no one else's
        with Loopback() as net, \
                Hellod("--listen", "127.0.0.1:%d" % port, command=[*net.prefix(), HELLOD]) as a, \
                Hellod("--listen", "127.0.0.2:%d" % port, command=[*net.prefix(), HELLOD]) as b:
            # A datagram that claims to come from the other hellod: the start of a loop.
            spoof("127.0.0.1", port, "127.0.0.2", port, "ping", prefix=net.prefix())
            spoof("127.0.0.2", port, "127.0.0.1", port, "pong", prefix=net.prefix())
            wait_until_drained(a.proc.pid, port)  # both sockets: the namespace's port 9999
            found_a, found_b = counters(a.stop()[1]), counters(b.stop()[1])
        for found in (found_a, found_b):
            self.assertEqual((found["read"], found["replied"], found["own-port"]), (1, 0, 1))

    def test_own_ports_can_be_allowed(self):
        with Hellod("--listen", "127.0.0.1:0", "--allow-own-ports") as d:
            spoof("127.0.0.2", d.port, "127.0.0.1", d.port, "self")
            wait_until_drained(d.proc.pid, d.port)
            found = counters(d.stop()[1])
        self.assertEqual((found["read"], found["replied"]), (1, 1))

    def test_a_loop_between_two_hellods_on_different_ports_settles_at_the_rate_limit(self):
        # Two echo servers, each rate-limiting the other (loopback is exempt by default, so
        # the test turns that off: on a network, loops come from real peers).
        limits = ("--mode", "echo", "--rate-limit", "200", "--rate-burst", "20", "--rate-limit-loopback")
        with Hellod("--listen", "127.0.0.1:0", *limits) as a, Hellod("--listen", "127.0.0.1:0", *limits) as b:
            started = time.monotonic()
            # Keep starting loops: 2000 datagrams "from A" to B over 2 s.
            spoof("127.0.0.1", a.port, "127.0.0.1", b.port, "loop", count=2000, rate=1000)
            elapsed = time.monotonic() - started
            found_a, found_b = counters(a.stop()[1]), counters(b.stop()[1])
        for name, found in (("a", found_a), ("b", found_b)):
            self.assertBalanced(found)
            self.assertGreater(found["replied"], 0)
            self.assertLessEqual(found["replied"], 20 + 200 * (elapsed + 0.5), (name, found))
        # B takes the injected 1000/s and must refuse most of it; A sees only what B lets
        # through (about its limit), so whether A also refuses some is down to timing.
        self.assertGreater(found_b.get("rate-limited", 0), 2000 - (20 + 200 * (elapsed + 0.5)), found_b)
        print("\n    measured: loop between two echo hellods, 1000 loops/s started for %.1f s: "
              "A replied %d (%.0f/s), B replied %d (%.0f/s); limit 200/s, burst 20"
              % (elapsed, found_a["replied"], found_a["replied"] / elapsed, found_b["replied"],
                 found_b["replied"] / elapsed))


class Accounting(TestCase):
    def test_a_million_bad_datagrams_make_a_few_log_lines_and_are_all_counted(self):
        with Hellod("--listen", "127.0.0.1:0", "--max-datagram", "32") as d:
            # 8 flows x 125,000 requests of 64 bytes, open loop: every one truncated.
            result = hello("bench", "--port", str(d.port), "--size", "64", "--rate", "400000", "--duration", "20",
                           "--requests", "125000", "--timeout", "0.2", "--json", timeout=60)
            report = json.loads(result.stdout)
            self.assertEqual(report["sent"], 1_000_000)
            wait_until_drained(d.proc.pid, d.port)
            d.wait_for_line(": warning: ", timeout=15)  # drops are summarised at a status tick
            code, rest = d.stop()
        found = counters(rest)
        self.assertEqual(code, 0)
        self.assertBalanced(found)
        self.assertEqual(found["replied"], 0)
        # Nothing lost silently: what was sent was read or dropped by a full receive queue.
        self.assertEqual(found["read"] + found["queue"], 1_000_000, found)
        self.assertEqual(found["truncated"], found["read"])
        lines = [line for line in (d.early_lines + rest).splitlines() if line.strip()]
        warnings = [line for line in lines if ": warning: " in line]
        self.assertEqual(len(lines), 3, lines)  # start, one warning, stop
        self.assertEqual(len(warnings), 1, lines)
        self.assertRegex(warnings[0], r"dropped \d+ datagrams since the last warning: truncated \d+")

    def test_kernel_receive_queue_overflows_are_counted(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            d.proc.send_signal(signal.SIGSTOP)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                for i in range(20000):  # far more than a 4 MiB receive buffer holds
                    client.sendto(b"overflow %d" % i, ("127.0.0.1", d.port))
            d.proc.send_signal(signal.SIGCONT)
            wait_until_drained(d.proc.pid, d.port)
            found = counters(d.stop()[1])
        self.assertGreater(found["queue"], 0)
        self.assertEqual(found["read"] + found["queue"], 20000, found)
        self.assertEqual(found["replied"], found["read"])


class Flood(TestCase):
    """A flood from 1000 source addresses, from a network namespace of the test's own."""

    # hellod's port in the test's namespace: outside the ephemeral range the flood's 1000
    # sockets take their ports from, so that none of them has hellod's own port (a source
    # on it is refused as own-port, and took a source's whole burst 1 time in about 30).
    PORT = 20000

    def flood(self, net, port, count, per_source, gap=0.0):
        out = net.client(["python3", UDPTOOL, "flood", SERVER, str(port), "--sources", "10.77.1.0",
                          "--count", str(count), "--per-source", str(per_source), "--gap", str(gap)], timeout=120)
        return json.loads(out.stdout)

    def test_each_source_is_held_to_its_limit(self):
        with TestNetwork(client_addresses=1000) as net:
            with Hellod("--listen", "%s:%d" % (SERVER, self.PORT), "--rate-limit", "20", "--rate-burst", "5",
                        command=[*net.server_prefix(), HELLOD]) as d:
                result = self.flood(net, d.port, 1000, 20)
                found = counters(d.stop()[1])
        bound = 5 + 20 * (result["elapsed"] + 0.1)
        self.assertLessEqual(max(result["replies"]), bound, result["elapsed"])
        short = [(i, n) for i, n in enumerate(result["replies"]) if n < 5]
        self.assertEqual(short, [], "sources short of their burst (last reply %s s after the first send; %s)"
                         % (result["last_reply"], found))  # each got its burst
        self.assertEqual(result["warmup_replies"], 1000)
        self.assertEqual(found["replied"], sum(result["replies"]) + 1000)
        self.assertEqual(found["read"] + found["queue"], result["sent"] + 1000)
        self.assertBalanced(found)
        print("\n    measured: 1000 sources x 20 datagrams in %.2f s, limit 20/s burst 5: replies per source %d-%d"
              % (result["elapsed"], min(result["replies"]), max(result["replies"])))

    def test_more_sources_than_the_table_holds_memory_stays_flat(self):
        # Limit 5/s, burst 5: a drained slot needs 1 s to refill, far longer than a round.
        with TestNetwork(client_addresses=1000) as net:
            with Hellod("--listen", "%s:%d" % (SERVER, self.PORT), "--rate-limit", "5", "--rate-burst", "5", "--rate-table", "256",
                        command=[*net.server_prefix(), HELLOD]) as d:
                # A first flood touches every buffer hellod allocated at start; then measure.
                first = self.flood(net, d.port, 1000, 10)
                before = rss_anon_kb(d.proc.pid)
                results = [self.flood(net, d.port, 1000, 10) for _ in range(3)]
                after = rss_anon_kb(d.proc.pid)
                found = counters(d.stop()[1])
        self.assertBalanced(found)
        self.assertEqual(found["replied"], sum(sum(r["replies"]) + r["warmup_replies"] for r in [first] + results))
        self.assertGreater(found["rate-limited"], 0)
        # At most 256 sources are tracked at once, and a slot is reused only once its bucket
        # has refilled: within a window of W seconds a slot grants at most burst + rate x W,
        # whoever holds it. W runs from a round's first datagram sent to its last reply seen
        # (+ 0.05 s for clocks read a little apart). 1000 sources each given their burst,
        # 5,000, as a table tracking them all would, break this bound.
        windows = [(r["last_reply"] or 0.0) + 0.05 for r in results]  # None: no reply at all
        bounds = [256 * (5 + 5 * window) for window in windows]
        for r, window, bound in zip(results, windows, bounds):
            self.assertLessEqual(sum(r["replies"]), bound, "a round of %.2f s" % window)
        self.assertLessEqual(after - before, 32, "anonymous memory grew by %d KiB" % (after - before))
        replies, sent = sum(sum(r["replies"]) for r in results), sum(r["sent"] for r in results)
        print("\n    measured: 3 x 1000 sources x 10 datagrams with a 256-slot table, limit 5/s burst 5: %d replied "
              "of %d (per round %s, bounds %s), anonymous RSS %d -> %d KiB"
              % (replies, sent, "/".join(str(sum(r["replies"])) for r in results), "/".join("%d" % b for b in bounds),
                 before, after))
