"""The chat protocol's bytes (docs/PROTOCOL.md, "chat"), for the Python tests and the bench
scripts: the only Python that knows them. Version 2: every datagram, either way, begins
with version (2), type and the client's tag (u64); integers are big-endian.

Encoders for every client request and relay message, decoders for every relay message
(`decode`) and request (`decode_request`, for fake relays), a member's id (`ident`), and
the version-1 datagrams of hellod 1.x for the tests of its refusal."""
import collections
import hashlib
import os
import struct

VERSION = 2
LEGACY_VERSION = 1
HEADER = 10          # version, type, tag
COOKIE = 12          # epoch u32, MAC u64
JOIN_LENGTH = 64     # a JOIN is padded to at least this
CHALLENGE_LENGTH = HEADER + COOKIE  # 22
NOT_A_MEMBER_LENGTH = HEADER + 8    # 18
LARGEST = 1232
MAX_TEXT = 1000
NO_COOKIE = bytes(COOKIE)

# Types: client to relay
JOIN, SAY, KEEPALIVE, LEAVE, RESEND, WHO, NICK = range(1, 8)
REQUESTS = (JOIN, SAY, KEEPALIVE, LEAVE, RESEND, WHO, NICK)
# Types: relay to client
CHALLENGE, WELCOME, EVENTS, MEMBERS, NOT_A_MEMBER, REFUSED = range(129, 135)
ANSWERS = (CHALLENGE, WELCOME, EVENTS, MEMBERS, NOT_A_MEMBER, REFUSED)
# Event kinds
MESSAGE, JOINED, LEFT, TIMED_OUT, RENAMED = range(1, 6)
# Refusal reasons
ROOM_FULL, NICK_TAKEN, TOO_MANY_ROOMS, TOO_MANY_MEMBERSHIPS, BAD_NAME = range(1, 6)


# Identities

def new_tag():
    """A client's tag: 64 random bits (never 0, so that no test mistakes it for none)."""
    return struct.unpack(">Q", os.urandom(8))[0] | 1


def new_secret(seed=None):
    """A client's secret, 16 bytes: random, or (a test's `seed`, an int) the same for the same
    seed, so that a test can rejoin as the member it made."""
    if seed is None:
        return os.urandom(16)
    return hashlib.sha256(b"chatwire test secret %d" % seed).digest()[:16]


def ident(secret):
    """A member's id: the first 8 bytes of its secret's SHA-256, as a u64."""
    return struct.unpack(">Q", hashlib.sha256(secret).digest()[:8])[0]


def cookie(epoch, mac):
    return struct.pack(">IQ", epoch, mac)


def _string(value):
    assert len(value) < 256, value
    return bytes([len(value)]) + value


def _text(value):
    return struct.pack(">H", len(value)) + value


def header(type_, tag, version=VERSION):
    return struct.pack(">BBQ", version, type_, tag)


# Client requests (v2)

def join(tag, cookie, secret, token, room, nick, pad=JOIN_LENGTH):
    assert len(cookie) == COOKIE and len(secret) == 16
    body = header(JOIN, tag) + cookie + secret + struct.pack(">Q", token) + _string(room) + _string(nick)
    return body.ljust(pad, b"\0")


def say(tag, token, sequence, text):
    return header(SAY, tag) + struct.pack(">QI", token, sequence) + _text(text)


def keepalive(tag, token, highest):
    return header(KEEPALIVE, tag) + struct.pack(">QI", token, highest)


def leave(tag, token):
    return header(LEAVE, tag) + struct.pack(">Q", token)


def resend(tag, token, first, count):
    return header(RESEND, tag) + struct.pack(">QIH", token, first, count)


def who(tag, token):
    return header(WHO, tag) + struct.pack(">Q", token)


def nick(tag, token, name):
    return header(NICK, tag) + struct.pack(">Q", token) + _string(name)


# Relay messages (v2), for fake relays and forgers

Event = collections.namedtuple("Event", "sequence kind nick text sender client")
Event.__new__.__defaults__ = (0, 0)  # sender id, client sequence


def challenge(tag, cookie_bytes):
    return header(CHALLENGE, tag) + cookie_bytes


def welcome(tag, token, instance, next_sequence, members_count):
    return header(WELCOME, tag) + struct.pack(">QQIH", token, instance, next_sequence, members_count)


def encode_event(e):
    return struct.pack(">IBQI", e.sequence, e.kind, e.sender, e.client) + _string(e.nick) + _text(e.text)


def events(tag, instance, evs):
    return header(EVENTS, tag) + struct.pack(">Q", instance) + b"".join(map(encode_event, evs))


def members(tag, instance, nicks):
    return header(MEMBERS, tag) + struct.pack(">QH", instance, len(nicks)) + b"".join(map(_string, nicks))


def not_a_member(tag, token):
    return header(NOT_A_MEMBER, tag) + struct.pack(">Q", token)


def refused(tag, reason):
    return header(REFUSED, tag) + bytes([reason])


# Decoding

Challenge = collections.namedtuple("Challenge", "tag cookie")
Welcome = collections.namedtuple("Welcome", "tag token instance next members")
Events = collections.namedtuple("Events", "tag instance events")
Members = collections.namedtuple("Members", "tag instance nicks")
NotAMember = collections.namedtuple("NotAMember", "tag token")
Refused = collections.namedtuple("Refused", "tag reason")

Join = collections.namedtuple("Join", "tag cookie secret token room nick")
Say = collections.namedtuple("Say", "tag token sequence text")
Keepalive = collections.namedtuple("Keepalive", "tag token highest")
Leave = collections.namedtuple("Leave", "tag token")
Resend = collections.namedtuple("Resend", "tag token first count")
Who = collections.namedtuple("Who", "tag token")
Nick = collections.namedtuple("Nick", "tag token nick")


class Malformed(ValueError):
    pass


class _Reader:
    def __init__(self, data, at):
        self.data, self.at = data, at

    def take(self, count):
        if count > len(self.data) - self.at:
            raise Malformed("short")
        self.at += count
        return self.data[self.at - count:self.at]

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self):
        return self.take(self.take(1)[0])

    def text(self):
        return self.take(self.unpack(">H")[0])

    def end(self):
        if self.at != len(self.data):
            raise Malformed("bytes after the last field")


def kind_of(datagram):
    """(version, type, tag) of a datagram with a v2 header; (version, type, None) of a
    shorter one or another version; None for fewer than two bytes."""
    if len(datagram) < 2:
        return None
    if datagram[0] != VERSION or len(datagram) < HEADER:
        return datagram[0], datagram[1], None
    return datagram[0], datagram[1], struct.unpack_from(">Q", datagram, 2)[0]


def type_of(datagram):
    """The type of a version-2 datagram with a header, else None."""
    k = kind_of(datagram)
    return k[1] if k and k[2] is not None else None


def tag_of(datagram):
    k = kind_of(datagram)
    return k[2] if k else None


def _opened(datagram):
    """A version-2 datagram's type, tag and a reader past its header; raises Malformed."""
    k = kind_of(datagram)
    if k is None or k[2] is None:
        raise Malformed("no version-2 header: %r" % datagram[:12])
    return k[1], k[2], _Reader(datagram, HEADER)


def decode(datagram):
    """A relay message (v2) as its namedtuple; raises Malformed as the spec would drop it."""
    type_, tag, r = _opened(datagram)
    if type_ == CHALLENGE:
        value = Challenge(tag, r.take(COOKIE))
    elif type_ == WELCOME:
        value = Welcome(tag, *r.unpack(">QQIH"))
    elif type_ == EVENTS:
        (instance,) = r.unpack(">Q")
        found = []
        while r.at < len(datagram):
            sequence, kind, sender, client = r.unpack(">IBQI")
            name = r.string()
            found.append(Event(sequence, kind, name, r.text(), sender, client))
        value = Events(tag, instance, found)
    elif type_ == MEMBERS:
        instance, count = r.unpack(">QH")
        value = Members(tag, instance, [r.string() for _ in range(count)])
    elif type_ == NOT_A_MEMBER:
        value = NotAMember(tag, *r.unpack(">Q"))
    elif type_ == REFUSED:
        value = Refused(tag, r.take(1)[0])
    else:
        raise Malformed("not a relay message: type %d" % type_)
    r.end()
    return value


def decode_request(datagram):
    """A client request (v2) as its namedtuple (a JOIN's padding is dropped); raises Malformed."""
    type_, tag, r = _opened(datagram)
    if type_ == JOIN:
        if len(datagram) < JOIN_LENGTH:
            raise Malformed("short JOIN")
        value = Join(tag, r.take(COOKIE), r.take(16), r.unpack(">Q")[0], r.string(), r.string())
        if any(r.take(len(datagram) - r.at)):
            raise Malformed("JOIN padding not zero")
    elif type_ == SAY:
        token, sequence = r.unpack(">QI")
        value = Say(tag, token, sequence, r.text())
    elif type_ == KEEPALIVE:
        value = Keepalive(tag, *r.unpack(">QI"))
    elif type_ == LEAVE:
        value = Leave(tag, *r.unpack(">Q"))
    elif type_ == RESEND:
        value = Resend(tag, *r.unpack(">QIH"))
    elif type_ == WHO:
        value = Who(tag, *r.unpack(">Q"))
    elif type_ == NICK:
        (token,) = r.unpack(">Q")
        value = Nick(tag, token, r.string())
    else:
        raise Malformed("not a request: type %d" % type_)
    r.end()
    return value


def decode_events(datagram):
    """The events of an EVENTS datagram (asserting that it is one)."""
    value = decode(datagram)
    assert isinstance(value, Events), value
    return value.events


def decode_members(datagram):
    """The nicks of a MEMBERS datagram (asserting that it is one)."""
    value = decode(datagram)
    assert isinstance(value, Members), value
    return value.nicks


# Version 1 (hellod 1.x): what a 1.x client sends, and the two answers a v2 relay gives it.

def v1_join(cookie16, session, token, room, nick):
    body = struct.pack(">BB", LEGACY_VERSION, JOIN) + cookie16 + struct.pack(">QQ", session, token)
    return (body + _string(room) + _string(nick)).ljust(JOIN_LENGTH, b"\0")


def v1_say(token, sequence, text):
    return struct.pack(">BBQI", LEGACY_VERSION, SAY, token, sequence) + _text(text)


def v1_keepalive(token, highest):
    return struct.pack(">BBQI", LEGACY_VERSION, KEEPALIVE, token, highest)


def v1_request(type_, token):
    """A v1 LEAVE or WHO (type, token)."""
    return struct.pack(">BBQ", LEGACY_VERSION, type_, token)


def v1_refusal():
    """A v2 relay's answer to a v1 JOIN: v1 REFUSED 3 with the words, 64 bytes."""
    return (bytes([LEGACY_VERSION, REFUSED, TOO_MANY_ROOMS, 0]) + b"chat protocol 2").ljust(JOIN_LENGTH, b"\0")


def v1_not_a_member(token):
    """A v2 relay's answer to a v1 request with a token: v1 NOT A MEMBER, 10 bytes."""
    return struct.pack(">BBQ", LEGACY_VERSION, NOT_A_MEMBER, token)
