/// Own messages on their way: typed and waiting their turn, sent and not yet acknowledged
/// (each with its attempts and when it is due again), and given up. The client sends what
/// it is told to; the ledger decides what, and what is still owed at the end.
struct DeliveryLedger {
    struct Outgoing {
        let sequence: UInt32
        let text: [UInt8]
        var attempts = 0
        var due: UInt64 = 0
    }

    /// What is due now: a SAY to send (its attempt counted), or a message given up.
    enum Step {
        case send(Outgoing)
        case givenUp([UInt8])
    }

    /// Messages sent and not yet acknowledged, at most: the relay's rate limit (a burst of
    /// 10) and its duplicate window (64 client sequences) are then never in the way.
    static let window = 8
    /// The relay's duplicate window: a SAY 64 or more client sequences below the highest it
    /// delivered counts as delivered, so none is sent while an older one is unacknowledged
    /// that far back (docs/PROTOCOL.md, "Delivery").
    static let sequenceSpan: UInt32 = 64
    /// Lines waiting to be sent, at most: past it a pipe is not read until the relay has
    /// acknowledged some, so a relay that acknowledges nothing cannot make the client read
    /// all its input into memory (a terminal's keys are read whatever the queue: Ctrl-C
    /// must work).
    static let queuedLinesLimit = 256

    private var queue: [[UInt8]] = []
    private var inFlight: [Outgoing] = []
    private var lost: [[UInt8]] = []
    private var nextSequence: UInt32 = 1

    var hasRoom: Bool { queue.count < Self.queuedLinesLimit }
    /// Nothing waits to be sent nor to be acknowledged.
    var isSettled: Bool { queue.isEmpty && inFlight.isEmpty }
    var nextDue: UInt64? { inFlight.map(\.due).min() }
    /// Sent and waiting, oldest first: what the live area shows as "(sending)".
    var pending: [[UInt8]] { inFlight.map(\.text) + queue }
    /// What the relay never acknowledged, at the end: given up first, then the rest.
    var unacknowledged: [[UInt8]] { lost + pending }

    mutating func enqueue(_ text: [UInt8]) {
        queue.append(text)
    }

    /// A message refused before it was sent (too long): owed all the same.
    mutating func refuse(_ text: [UInt8]) {
        lost.append(text)
    }

    /// What is due at `now`, in order: resends, or messages given up after `attempts`; then
    /// lines waiting, while the window and the relay's duplicate window allow. Each send's
    /// attempt is counted, and its next due time set by `backoff`.
    mutating func due(_ now: UInt64, attempts: Int, backoff: (Int) -> UInt64) -> [Step] {
        var steps: [Step] = []
        var i = 0
        while i < inFlight.count {
            if inFlight[i].due <= now {
                if inFlight[i].attempts >= attempts {
                    let text = inFlight.remove(at: i).text
                    lost.append(text)
                    steps.append(.givenUp(text))
                    continue
                }
                inFlight[i].attempts += 1
                inFlight[i].due = now + backoff(inFlight[i].attempts)
                steps.append(.send(inFlight[i]))
            }
            i += 1
        }
        while inFlight.count < Self.window && !queue.isEmpty
            && nextSequence &- (inFlight.first?.sequence ?? nextSequence) < Self.sequenceSpan
        {
            let m = Outgoing(sequence: nextSequence, text: queue.removeFirst(), attempts: 1, due: now + backoff(1))
            nextSequence &+= 1
            inFlight.append(m)
            steps.append(.send(m))
        }
        return steps
    }

    /// Our own copy came back: its acknowledgement (by client sequence and text), whether
    /// shown now or a duplicate; and one given up that arrives after all is owed no more.
    mutating func acknowledge(clientSequence: UInt32, text: [UInt8]) {
        let waiting = inFlight.count
        inFlight.removeAll { $0.sequence == clientSequence && $0.text == text }
        if inFlight.count < waiting {
            // The relay takes our messages, if not all at once (a room over its rate
            // refuses them silently): the others count their attempts, and back off,
            // from here, so that they are slowed but not given up while it does.
            for i in inFlight.indices { inFlight[i].attempts = 0 }
        }
        if let i = lost.firstIndex(of: text) { lost.remove(at: i) }
    }

    /// Everything unacknowledged due at once: with its attempts anew after a rejoin (a
    /// relay that forgot us), as it was after a rebinding (the same membership, moved).
    mutating func resendAll(_ now: UInt64, attemptsAnew: Bool) {
        for i in inFlight.indices {
            if attemptsAnew { inFlight[i].attempts = 0 }
            inFlight[i].due = now
        }
    }
}
