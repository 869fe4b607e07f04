import HelloChatWire

/// What happens to the chat client: the loop that owns the socket, the terminal and the
/// clock turns each into one of these and hands it to `ChatClient.handle(_:now:)`.
package enum ChatInput: Equatable, Sendable {
    /// A datagram from the relay's address, as received (its tag not yet checked).
    case datagram([UInt8])
    /// Bytes read from a terminal in raw mode: keys for the line editor.
    case keys([UInt8])
    /// A line read from a pipe, without its newline: a message or a command.
    case line([UInt8])
    /// Standard input ended (a pipe's end; a terminal that closed).
    case endOfInput
    /// The clock moved: resends, back-off, keepalives, a gap's RESEND, a WHO given up;
    /// and the way out, once there is nothing left to wait for.
    case tick
    /// Leave now, without waiting for acknowledgements (SIGTERM, SIGINT, SIGHUP).
    case leaveNow
}

/// What the chat client asks of the loop, in order.
package enum ChatEffect: Equatable, Sendable {
    /// A datagram for the relay.
    case send([UInt8])
    /// A line of the room (an event, a gap counted, the members), already neutralised.
    case print(String)
    /// Something local (a refusal, a typo, a message given up): for standard error, or the
    /// screen's lines marked apart.
    case note(String)
    /// The live area changed (a terminal only): draw it.
    case redraw(LiveArea)
    /// The end: the exit code, and what went wrong (without the "hello: ").
    case exit(code: Int32, message: String?)
}

/// The bottom of a terminal's screen, redrawn in place: own messages not yet acknowledged,
/// then the prompt and the line being typed.
package struct LiveArea: Equatable, Sendable {
    package var pending: [String]
    package var prompt: String
    package var text: [Character]
    package var cursor: Int

    package init(pending: [String], prompt: String, text: [Character], cursor: Int) {
        self.pending = pending
        self.prompt = prompt
        self.text = text
        self.cursor = cursor
    }
}

/// What `hello chat` was told on its command line, and what it drew at random.
package struct ChatSettings: Sendable {
    /// The relay's address as shown in messages ("127.0.0.1:6000").
    package var address: String
    package var room: [UInt8]
    package var nick: [UInt8]
    package var secret: ChatSecret
    package var tag: UInt64
    /// Nanoseconds before the first resend (then doubling, to 4 s at most).
    package var timeout: UInt64
    /// Sends of a JOIN or a message before it counts as lost (--retries + 1).
    package var attempts: Int
    /// Nanoseconds between keepalives.
    package var keepalive: UInt64
    /// Keys from a terminal and a live area, rather than lines from a pipe.
    package var terminal: Bool

    package init(
        address: String, room: [UInt8], nick: [UInt8], secret: ChatSecret, tag: UInt64,
        timeout: UInt64, attempts: Int, keepalive: UInt64, terminal: Bool
    ) {
        self.address = address
        self.room = room
        self.nick = nick
        self.secret = secret
        self.tag = tag
        self.timeout = timeout
        self.attempts = attempts
        self.keepalive = keepalive
        self.terminal = terminal
    }
}
