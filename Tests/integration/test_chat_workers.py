"""One chat room over several sockets: `--workers 2` (SO_REUSEPORT; the kernel spreads the
members' source ports over two sockets and threads), and two sockets of different
families. Every member must get every message once, all in one order."""
import socket
import unittest

import chatwire as wire
from harness import Hellod, TestCase, counters
from netns import Loopback
from test_activation import activated
from test_chat import Client

MESSAGE = wire.MESSAGE


class FamilyClient(Client):
    """test_chat's client, on the family of `address`."""

    def __init__(self, address, nick, secret, net=None):
        super().__init__(address[1], nick, secret)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        if family == socket.AF_INET6 or net:
            self.sock.close()
            self.sock = net.socket(family) if net else socket.socket(family, socket.SOCK_DGRAM)
            self.sock.settimeout(2)
        self.address = address


def endpoint(listen):
    """("127.0.0.1", 6000) from "chat@127.0.0.1:6000", ("::1", 6000) from "chat@[::1]:6000"."""
    host, port = listen.split("@", 1)[1].rsplit(":", 1)
    return host.strip("[]"), int(port)


class ChatWorkersTest(TestCase):
    def room_over(self, server, addresses, members, messages_each=3, net=None):
        """`members` members, spread over `addresses` in turn (in `net`, a netns.Loopback,
        if given), join one room and each say `messages_each` messages; returns what the
        stop line counted."""
        clients = [FamilyClient(addresses[i % len(addresses)], b"m%02d" % i, 1000 + i, net) for i in range(members)]
        try:
            for client in clients:
                client.join(b"lobby")
            for sequence in range(1, messages_each + 1):
                for client in clients:
                    client.say(sequence, b"%s says %d" % (client.nick, sequence))
            total = members * messages_each
            expected = {(c.nick, b"%s says %d" % (c.nick, s)) for c in clients for s in range(1, messages_each + 1)}
            orders = []
            for client in clients:
                client.read_events(lambda got: len([e for e in got if e[1] == MESSAGE]) >= total, timeout=5)
                messages = [(e[0], e[2], e[3]) for e in client.events if e[1] == MESSAGE]
                self.assertEqual(len(messages), total, "%s got duplicates: %r" % (client.nick, messages))
                self.assertEqual({(nick, text) for _, nick, text in messages}, expected)
                orders.append(messages)
            for client, order in zip(clients, orders):
                self.assertEqual(order, orders[0], "%s saw another order than %s" % (client.nick, clients[0].nick))
            sequences = [s for s, _, _ in orders[0]]
            self.assertEqual(sequences, list(range(sequences[0], sequences[0] + total)))
        finally:
            for client in clients:
                client.close()
        code, text = server.stop()
        self.assertEqual(code, 0)
        found = counters(text)
        self.assertBalanced(found)
        self.assertEqual(found["dropped"], 0, found)
        return found

    def test_two_workers_on_one_port_share_a_room(self):
        with Hellod("--listen", "chat@127.0.0.1:0", "--workers", "2", "--chat-memberships-per-prefix", "64") as server:
            self.assertEqual(len(server.addresses), 2)
            found = self.room_over(server, [endpoint(server.addresses[0])], members=16)
        # The kernel spread the 16 source ports over both sockets: both workers read some.
        self.assertEqual(len(found["per_socket"]), 2)
        self.assertTrue(all(n > 0 for n in found["per_socket"]), found)

    def test_an_ipv4_and_an_ipv6_socket_share_a_room(self):
        with Hellod("--listen", "chat@127.0.0.1:0", "--listen", "chat@[::1]:0",
                    "--chat-memberships-per-prefix", "64") as server:
            addresses = [endpoint(a) for a in server.addresses]
            self.assertEqual([a[0] for a in addresses], ["127.0.0.1", "::1"])
            found = self.room_over(server, addresses, members=8)
        self.assertTrue(all(n > 0 for n in found["per_socket"]), found)

    def test_two_activated_sockets_share_a_room(self):
        # systemd-socket-activate passes an IPv4 and an IPv6 socket (unnamed: --mode chat).
        net = Loopback()
        self.addCleanup(net.close)
        with activated(net, "127.0.0.1:{}", "[::1]:{}", first=wire.join(wire.new_tag(), wire.NO_COOKIE, wire.new_secret(), 0, b"lobby", b"probe"),
                       args=("--mode", "chat", "--chat-memberships-per-prefix", "64")) as server:
            self.assertEqual(wire.type_of(server.first_reply), wire.CHALLENGE)
            self.assertEqual(server.origin, "socket activation")
            found = self.room_over(server, [endpoint(a) for a in server.addresses], members=8, net=net)
        self.assertEqual(found["read"], 1 + 8 * (2 + 3))
        self.assertTrue(all(n > 0 for n in found["per_socket"]), found)


if __name__ == "__main__":
    unittest.main()
