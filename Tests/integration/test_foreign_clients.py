"""Clients no one here wrote: socat, netcat (OpenBSD) and Python's socket module."""
import shutil
import socket
import subprocess

from harness import Hellod, TestCase


class ForeignClients(TestCase):
    def test_socat(self):
        self.assertTrue(shutil.which("socat"), "socat is missing: test.sh installs it")
        with Hellod("--listen", "127.0.0.1:0") as d:
            out = subprocess.run(["socat", "-t", "1", "-T", "2", "-", "UDP4:127.0.0.1:%d" % d.port],
                                 input=b"Michael", capture_output=True, timeout=10).stdout
        self.assertEqual(out, b"Hello, Michael!")

    def test_socat_ipv6_echo(self):
        with Hellod("--listen", "[::1]:0", "--mode", "echo") as d:
            out = subprocess.run(["socat", "-t", "1", "-T", "2", "-", "UDP6:[::1]:%d" % d.port],
                                 input=b"\x00\x01binary\xff", capture_output=True, timeout=10).stdout
        self.assertEqual(out, b"\x00\x01binary\xff")

    def test_netcat(self):
        self.assertTrue(shutil.which("nc"), "nc is missing: test.sh installs netcat-openbsd")
        with Hellod("--listen", "127.0.0.1:0") as d:
            out = subprocess.run(["nc", "-u", "-w", "1", "127.0.0.1", str(d.port)],
                                 input=b"Tracy", capture_output=True, timeout=10).stdout
        self.assertEqual(out, b"Hello, Tracy!")

    def test_python_socket_module_the_tutorial_client(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                replies = []
                for name in ("Michael", "Tracy", "Sarah"):
                    s.sendto(name.encode(), ("127.0.0.1", d.port))
                    replies.append(s.recvfrom(1024))
        self.assertEqual([r[0] for r in replies], [b"Hello, Michael!", b"Hello, Tracy!", b"Hello, Sarah!"])
        self.assertTrue(all(r[1] == ("127.0.0.1", d.port) for r in replies))
