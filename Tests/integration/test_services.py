"""One hellod, several services: each socket answers with its own (`--listen
SERVICE@ADDRESS`, or the socket's FileDescriptorName= under socket activation), checked
with socat, Python's socket module and the hello client; counters per service; SIGHUP."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from harness import HELLO, HELLOD, Hellod, LineReader, TestCase, counters, exchange, hello
from netns import Loopback

def per_service(stopped):
    """Each service's counters, from the metrics file (Hellod.stop()'s text or
    Hellod.metrics()): {"hello": {"read": 3, "replied": 3, "dropped": 0, "queue": 0}, ...}."""
    metrics = stopped if isinstance(stopped, dict) else stopped.metrics
    services = {dict(labels)["service"] for name, labels in metrics if name == "hellod_datagrams_read_total"}
    return {service: {k: counters(metrics, service)[k] for k in ("read", "replied", "dropped", "queue")}
            for service in services}


def port_of(d, service):
    """The port of `service`'s first socket, from the start line's SERVICE@ADDRESS list."""
    for address in d.addresses:
        name, _, rest = address.partition("@")
        if name == service:
            return int(rest.rsplit(":", 1)[1])
    raise AssertionError("no %s socket in %r" % (service, d.addresses))


def socat(port, payload):
    """One datagram through socat, its reply (bytes)."""
    return subprocess.run(["socat", "-t", "2", "-", "UDP:127.0.0.1:%d" % port], input=payload,
                          capture_output=True, timeout=10).stdout


class TwoServices(TestCase):
    def test_hello_and_echo_from_one_process(self):
        with Hellod("--listen", "hello@127.0.0.1:0", "--listen", "echo@127.0.0.1:0") as d:
            self.assertEqual([a.split("@")[0] for a in d.addresses], ["hello", "echo"])
            self.assertIn("services hello on 1, echo on 1", d.start_line)
            greet, echo = port_of(d, "hello"), port_of(d, "echo")
            self.assertEqual(socat(greet, b"Michael"), b"Hello, Michael!")
            self.assertEqual(socat(echo, b"Michael"), b"Michael")
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", greet), b"Tracy"), (b"Hello, Tracy!", ("127.0.0.1", greet)))
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", echo), b"Tracy"), (b"Tracy", ("127.0.0.1", echo)))
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", echo), b""), (b"", ("127.0.0.1", echo)))
            result = hello("--port", str(greet), "Sarah")
            self.assertEqual((result.returncode, result.stdout), (0, "Hello, Sarah!\n"))
            result = hello("bench", "--port", str(echo), "--mode", "echo", "--flows", "4", "--window", "8",
                           "--requests", "250", "--json")
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            code, rest = d.stop()
        self.assertEqual(code, 0)
        total, services = counters(rest), per_service(rest)
        self.assertEqual(services["hello"], {"read": 3, "replied": 3, "dropped": 0, "queue": 0})
        self.assertEqual(services["echo"], {"read": 1003, "replied": 1003, "dropped": 0, "queue": 0})
        self.assertEqual((total["read"], total["replied"]), (1006, 1006))
        self.assertBalanced(total)

    def test_an_address_without_a_service_takes_modes(self):
        with Hellod("--mode", "echo", "--listen", "127.0.0.1:0", "--listen", "hello@[::1]:0") as d:
            self.assertTrue(d.addresses[0].startswith("echo@127.0.0.1:"), d.addresses)
            self.assertTrue(d.addresses[1].startswith("hello@[::1]:"), d.addresses)
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", port_of(d, "echo")), b"x")[0], b"x")
            self.assertEqual(exchange(socket.AF_INET6, ("::1", port_of(d, "hello")), b"x")[0], b"Hello, x!")

    def test_each_service_refuses_on_its_own_and_counts_per_service(self):
        with Hellod("--listen", "hello@127.0.0.1:0", "--listen", "echo@127.0.0.1:0", "--max-datagram", "100") as d:
            exchange(socket.AF_INET, ("127.0.0.1", port_of(d, "hello")), b"fits")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"x" * 500, ("127.0.0.1", port_of(d, "echo")))  # truncated: no reply
                s.settimeout(0.5)
                self.assertRaises(socket.timeout, s.recv, 1000)
            code, rest = d.stop()
        services = per_service(rest)
        self.assertEqual(services["hello"], {"read": 1, "replied": 1, "dropped": 0, "queue": 0})
        self.assertEqual(services["echo"], {"read": 1, "replied": 0, "dropped": 1, "queue": 0})
        self.assertIn("echo: read 1, replied 0, dropped 1 (truncated 1)", rest)

    def test_an_unknown_service_is_a_one_line_error_and_exit_64(self):
        result = subprocess.run([HELLOD, "--listen", "chargen@127.0.0.1:0"], capture_output=True, text=True, timeout=10)
        self.assertEqual(result.returncode, 64)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("chargen@127.0.0.1:0", lines[0])
        self.assertIn('no service is called "chargen"', lines[0])


class ServicesByName(TestCase):
    """Under socket activation the service of each socket comes from its name
    (FileDescriptorName=, here systemd-socket-activate's --fdname), never its position."""

    def setUp(self):
        self.assertTrue(shutil.which("systemd-socket-activate"), "systemd-socket-activate is missing")
        self.net = Loopback()  # ports of the test's own
        self.addCleanup(self.net.close)

    def activate(self, names, *args):
        """hellod under systemd-socket-activate, in the test's own network, with one
        127.0.0.1 socket per name; returns (process, its stderr, ports). It starts hellod at
        the first datagram."""
        ports = [7000 + i for i in range(len(names))]
        command = [*self.net.prefix(), "systemd-socket-activate", "--datagram", "--fdname=" + ":".join(names)]
        for port in ports:
            command += ["-l", "127.0.0.1:%d" % port]
        proc = subprocess.Popen([*command, HELLOD, *args], stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.end, proc)
        lines = LineReader(proc.stderr)
        deadline = time.monotonic() + 10
        for _ in ports:  # "Listening on 127.0.0.1:7000 as 3.": bound, ready for the first datagram
            line = lines.next(deadline - time.monotonic())
            if line is None or not line.startswith("Listening on"):
                raise AssertionError("systemd-socket-activate did not listen: %r" % line)
        return proc, lines, ports

    def end(self, proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()

    def stop(self, proc, lines):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        return lines.rest(5)

    def ask(self, port, payload):
        return exchange(socket.AF_INET, ("127.0.0.1", port), payload, timeout=10, net=self.net)[0]

    def test_names_choose_the_service_whatever_the_order(self):
        for names in (["echo", "hello"], ["hello", "echo"], ["hellod.socket", "echo"], ["unknown", "echo"]):
            with self.subTest(names=names):
                proc, lines, ports = self.activate(names, "--mode", "hello")
                replies = [self.ask(port, b"Sarah") for port in ports]
                rest = self.stop(proc, lines)
                expected = [b"Sarah" if name == "echo" else b"Hello, Sarah!" for name in names]
                self.assertEqual(replies, expected)
                self.assertIn("socket activation", rest)

    def test_the_default_name_follows_mode(self):
        proc, lines, ports = self.activate(["hellod-echo.socket"], "--mode", "echo")
        self.assertEqual(self.ask(ports[0], b"Sarah"), b"Sarah")
        self.stop(proc, lines)

    def test_a_name_that_is_no_service_fails_in_one_line_with_exit_1(self):
        proc, lines, ports = self.activate(["hello", "chargen"])
        with self.net.socket() as s:
            s.sendto(b"start", ("127.0.0.1", ports[0]))  # starts hellod, which refuses to
        proc.wait(timeout=10)
        stderr = lines.rest(5)
        self.assertEqual(proc.returncode, 1)
        lines = [line for line in stderr.splitlines() if line.startswith("hellod:")]
        self.assertEqual(len(lines), 1, stderr)
        self.assertIn('"chargen"', lines[0])


class Signals(TestCase):
    def test_sighup_logs_the_counters_and_hellod_goes_on(self):
        with Hellod("--listen", "hello@127.0.0.1:0", "--listen", "echo@127.0.0.1:0") as d:
            exchange(socket.AF_INET, ("127.0.0.1", port_of(d, "hello")), b"before")
            # The reply may reach us a moment before the worker publishes its counters:
            # ask again until the metrics file, written before the line, counts it (a
            # handful of times at most).
            for _ in range(20):
                d.proc.send_signal(signal.SIGHUP)
                d.wait_for_line("counters on SIGHUP", timeout=5)
                if per_service(d.metrics())["hello"]["read"] == 1:
                    break
            self.assertEqual(per_service(d.metrics())["hello"], {"read": 1, "replied": 1, "dropped": 0, "queue": 0})
            self.assertIsNone(d.proc.poll())
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", port_of(d, "echo")), b"after")[0], b"after")
            code, rest = d.stop()
        self.assertEqual(code, 0)
        stop = [line for line in rest.splitlines() if "stopped on SIGTERM" in line]
        self.assertEqual(len(stop), 1, rest)
        self.assertEqual(counters(rest)["read"], 2)


class Linking(TestCase):
    def test_only_hellod_links_libsystemd(self):
        def needed(binary):
            out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
            return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
        self.assertTrue(any(lib.startswith("libsystemd") for lib in needed(HELLOD)), needed(HELLOD))
        self.assertFalse(any(lib.startswith("libsystemd") for lib in needed(HELLO)), needed(HELLO))
