"""hellod's metrics file (--metrics-file) checked by its real consumers: Prometheus's
`promtool check metrics`, and a real node_exporter whose textfile collector reads hellod's
directory, run on 127.0.0.1 inside a network namespace of the test's own and scraped over
HTTP there. Both come out of Debian's packages without installing them
(scripts/prometheus-tools.sh): installed, they would start daemons on the host."""
import os
import socket
import stat
import subprocess
import tempfile
import time
import unittest

from harness import HELLO, HELLOD, ROOT, Hellod, LineReader, TestCase, counters, metric, parse_metrics
from netns import Loopback

def prometheus_tools():
    """The directory holding promtool and node_exporter, fetched once into .build-prometheus."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "prometheus-tools.sh")], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise AssertionError("scripts/prometheus-tools.sh failed: %s" % out.stderr)
    return os.path.join(out.stdout.strip(), "bin")


def known_load(test, d, make_socket, prefix=()):
    """5 hello requests answered; 12 echo requests at once, of which the limiter
    (--rate-burst 8) answers 8 and drops 4; one `hello chat` member (run after `prefix`)
    says one message and leaves, seen in a periodic write while it is in the room."""
    ports = {a.split("@")[0]: int(a.rsplit(":", 1)[1]) for a in d.addresses}
    with make_socket() as s:
        s.settimeout(2)
        for i in range(5):
            s.sendto(b"n%d" % i, ("127.0.0.1", ports["hello"]))
            test.assertEqual(s.recv(2048), b"Hello, n%d!" % i)
    with make_socket() as s:
        for i in range(12):  # at once: no time for the limiter to earn another reply
            s.sendto(b"e%d" % i, ("127.0.0.1", ports["echo"]))
        s.settimeout(0.5)
        replies = []
        try:
            while True:
                replies.append(s.recv(2048))
        except socket.timeout:
            pass
        test.assertEqual(replies, [b"e%d" % i for i in range(8)])
    chat = subprocess.Popen([*prefix, HELLO, "chat", "--port", str(ports["chat"]), "--room", "ops", "--nick", "ada",
                             "--timeout", "0.5"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = LineReader(chat.stdout)
    try:
        chat.stdin.write("hi\n")
        chat.stdin.flush()
        while True:
            line = out.next(10)
            test.assertIsNotNone(line, "hello chat ended before its message came back")
            if line.startswith("ada: hi"):
                break
        deadline = time.monotonic() + 5  # the next periodic write (--metrics-interval 1)
        while time.monotonic() < deadline:
            now = d.metrics()
            if metric(now, "hellod_chat_members") == 1:
                break
            time.sleep(0.1)
        test.assertEqual((metric(now, "hellod_chat_rooms"), metric(now, "hellod_chat_members")), (1, 1), now)
        test.assertEqual(metric(now, "hellod_up"), 1)
        chat.stdin.close()
        test.assertEqual(chat.wait(timeout=15), 0)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait(timeout=10)
        out.rest(timeout=1)
        chat.stdout.close()


LOAD_ARGS = ["--listen", "hello@127.0.0.1:0", "--listen", "echo@127.0.0.1:0", "--listen", "chat@127.0.0.1:0",
             "--rate-limit", "1", "--rate-burst", "8", "--rate-limit-loopback", "--metrics-interval", "1"]



def start_node_exporter(test, net, directory):
    """node_exporter (from `test.tools`) inside the namespace `net`, on 127.0.0.1:9100,
    serving only its textfile collector over `directory`; killed at `test`'s cleanup."""
    exporter = subprocess.Popen([*net.prefix(), os.path.join(test.tools, "node_exporter"),
                                 "--web.listen-address=127.0.0.1:9100", "--collector.disable-defaults",
                                 "--collector.textfile", "--collector.textfile.directory=" + directory],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    test.addCleanup(lambda: exporter.poll() is None and (exporter.kill(), exporter.wait(timeout=10)))


def scrape_node_exporter(net):
    """node_exporter's /metrics, fetched with urllib inside the namespace `net` (it may
    still be starting: retried for up to 10 s)."""
    fetch = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=2).read().decode())"
    deadline = time.monotonic() + 10
    while True:
        got = subprocess.run([*net.prefix(), "python3", "-c", fetch], capture_output=True, text=True, timeout=20)
        if got.returncode == 0 or time.monotonic() > deadline:
            if got.returncode != 0:
                raise AssertionError("node_exporter's /metrics: %s" % got.stderr)
            return got.stdout
        time.sleep(0.2)

class MetricsFile(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tools = prometheus_tools()

    def assertKnownLoad(self, metrics):
        """The figures of known_load() in the last write."""
        self.assertEqual(counters(metrics, "hello"), {"read": 5, "replied": 5, "dropped": 0, "queue": 0,
                                                      "per_socket": [5]})
        self.assertEqual(counters(metrics, "echo"), {"read": 12, "replied": 8, "dropped": 4, "queue": 0,
                                                     "per_socket": [12], "rate-limited": 4})
        chat = counters(metrics, "chat")
        self.assertBalanced(chat)
        self.assertEqual(chat["dropped"], 0, chat)
        self.assertEqual([metric(metrics, "hellod_chat_" + name) for name in ("rooms", "members", "messages_total",
                                                                                "joins_total", "leaves_total")],
                         [0, 0, 1, 1, 1])
        # ada's own copy of its message, of its join and of its leave are deliveries at least.
        self.assertGreaterEqual(metric(metrics, "hellod_deliveries_total", service="chat"), 2)
        self.assertEqual(metric(metrics, "hellod_up"), 0)  # the last write, at stop

    def test_promtool_accepts_the_file_and_it_counts_a_known_load(self):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "hellod.prom")
            # The unit's UMask=0077: the file must still be readable by node_exporter's user.
            with Hellod(*LOAD_ARGS, "--metrics-file", path,
                        command=["sh", "-c", 'umask 077 && exec "$0" "$@"', HELLOD]) as d:
                self.assertEqual(metric(d.metrics(), "hellod_up"), 1)  # written at start
                known_load(self, d, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                code, rest = d.stop()
            self.assertEqual(code, 0, rest)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)
            self.assertEqual(os.listdir(directory), ["hellod.prom"])  # no temporary file left
            with open(path) as f:
                text = f.read()
            check = subprocess.run([os.path.join(self.tools, "promtool"), "check", "metrics"], input=text,
                                   capture_output=True, text=True, timeout=30)
            self.assertEqual((check.returncode, check.stdout + check.stderr), (0, ""))
            self.assertKnownLoad(parse_metrics(text))
            self.assertIn('hellod_build_info{version="%s"} 1' % self.version(), text)
            for line in ("# TYPE hellod_datagrams_read_total counter", "# TYPE hellod_chat_members gauge",
                         "# HELP hellod_datagrams_dropped_total "):
                self.assertIn(line, text)

    def test_node_exporter_serves_the_counters(self):
        with Loopback() as net, tempfile.TemporaryDirectory() as directory:
            os.chmod(directory, 0o755)
            start_node_exporter(self, net, directory)

            with Hellod(*LOAD_ARGS, "--metrics-file", os.path.join(directory, "hellod.prom"),
                        command=[*net.prefix(), HELLOD]) as d:
                known_load(self, d, net.socket, prefix=net.prefix())
                code, rest = d.stop()
            self.assertEqual(code, 0, rest)
            scraped = parse_metrics(scrape_node_exporter(net))
            self.assertEqual(metric(scraped, "node_textfile_scrape_error"), 0)
            served = {key: value for key, value in scraped.items() if key[0].startswith("hellod_")}
            self.assertKnownLoad(served)
            self.assertEqual(served, rest.metrics)  # every series, as hellod wrote it

    def test_an_unwritable_file_is_one_warning_and_hellod_serves_on(self):
        with Hellod("--listen", "127.0.0.1:0", "--metrics-file", "/nonexistent/hellod.prom", "--metrics-interval", "1") as d:
            self.assertEqual(self.exchange(d.port, b"x"), b"Hello, x!")
            time.sleep(2.5)  # two more writes fail the same way: said once
            code, rest = d.stop()
        self.assertEqual(code, 0)
        warnings = [line for line in (d.early_lines + rest).splitlines() if "/nonexistent/.hellod.prom.tmp" in line]
        self.assertEqual(len(warnings), 1, d.early_lines + rest)
        self.assertIn("warning: cannot write the metrics file", warnings[0])

    def test_bad_metrics_options_exit_64_in_one_line(self):
        for args in (["--metrics-interval", "0"], ["--metrics-file", ""], ["--metrics-file", "/run/hellod/"]):
            result = subprocess.run([HELLOD, "--listen", "127.0.0.1:0", "--metrics-file", "/tmp/x.prom", *args],
                                    capture_output=True, text=True, timeout=10)
            self.assertEqual(result.returncode, 64, (args, result.stderr))
            self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
            self.assertIn("--metrics-", result.stderr)

    @staticmethod
    def exchange(port, payload, timeout=2):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(payload, ("127.0.0.1", port))
            try:
                return s.recv(2048)
            except socket.timeout:
                return None

    @staticmethod
    def version():
        return subprocess.run([HELLOD, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()


if __name__ == "__main__":
    unittest.main()
