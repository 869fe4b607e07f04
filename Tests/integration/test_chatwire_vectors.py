"""The Python codec (chatwire.py) against the shared byte vectors of Tests/vectors/chat-wire.txt,
which the Swift codec's tests read too (Tests/HelloChatWireTests/SharedVectorTests.swift): the two
encoders agree byte for byte on every message of the protocol, and the Python decoders take
each relay message back. A line of the file: a vector's name, a space, its bytes in hex."""
import os
import unittest

import chatwire as wire

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors", "chat-wire.txt")

# The values every vector uses, the same in SharedVectorTests.swift.
TAG = 0x0102030405060708
TOKEN = 0x1112131415161718
SECRET = bytes(range(0x20, 0x30))
COOKIE = wire.cookie(0x31323334, 0x35363738393A3B3C)
INSTANCE = 0x4142434445464748


def vectors():
    """Each message of the protocol, encoded by chatwire: name -> bytes."""
    say_event = wire.Event(7, wire.MESSAGE, b"ada", b"hi", wire.ident(SECRET), 3)
    rename = wire.Event(8, wire.RENAMED, b"ada", b"Ada", wire.ident(SECRET), 0)
    return {
        "join-without-cookie": wire.join(TAG, wire.NO_COOKIE, SECRET, 0, b"lobby", b"ada"),
        "join-rebinding": wire.join(TAG, COOKIE, SECRET, TOKEN, b"lobby", b"ada"),
        "say": wire.say(TAG, TOKEN, 3, b"hi"),
        "keepalive": wire.keepalive(TAG, TOKEN, 6),
        "leave": wire.leave(TAG, TOKEN),
        "resend": wire.resend(TAG, TOKEN, 5, 2),
        "who": wire.who(TAG, TOKEN),
        "nick": wire.nick(TAG, TOKEN, b"Ada"),
        "challenge": wire.challenge(TAG, COOKIE),
        "welcome": wire.welcome(TAG, TOKEN, INSTANCE, 9, 2),
        "events": wire.events(TAG, INSTANCE, [say_event, rename]),
        "members": wire.members(TAG, INSTANCE, [b"ada", b"bob"]),
        "not-a-member": wire.not_a_member(TAG, TOKEN),
        "refused": wire.refused(TAG, wire.NICK_TAKEN),
        "v1-refusal": wire.v1_refusal(),
        "v1-not-a-member": wire.v1_not_a_member(TOKEN),
    }


def shared():
    with open(VECTORS) as f:
        pairs = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return {name: bytes.fromhex(hexed) for name, hexed in pairs}


class VectorTest(unittest.TestCase):
    def test_the_python_codec_encodes_every_shared_vector_byte_for_byte(self):
        ours, theirs = vectors(), shared()
        self.assertEqual(sorted(ours), sorted(theirs))
        for name in ours:
            self.assertEqual(ours[name].hex(), theirs[name].hex(), name)

    def test_the_python_decoders_take_every_shared_vector_back(self):
        theirs = shared()
        for name, datagram in theirs.items():
            if name.startswith("v1-"):
                continue
            if datagram[1] < 128:
                self.assertEqual(wire.decode_request(datagram).tag, TAG, name)
            else:
                self.assertEqual(wire.decode(datagram).tag, TAG, name)
        self.assertEqual(wire.decode(theirs["events"]).events[0].sender, wire.ident(SECRET))


if __name__ == "__main__":
    # Writes the file from the Python codec: run once when the protocol changes, then check
    # that the Swift tests agree (swift test --filter SharedVector).
    with open(VECTORS, "w") as f:
        f.write("# The chat protocol's messages, byte for byte (docs/PROTOCOL.md): both codecs' tests\n"
                "# read this (Tests/integration/test_chatwire_vectors.py, Tests/HelloChatWireTests).\n")
        for name, datagram in vectors().items():
            f.write("%s %s\n" % (name, datagram.hex()))
