import HelloReplies
import HelloServer
import HelloSocket
import Testing

/// How many datagrams a worker asks the kernel for: a batch, or one where they come alone
/// (`ReceiveWindow`), and that a worker reads so over real sockets.
struct ReceiveWindowTests {
    @Test func aLoneDatagramMakesTheNextReceiveAskForOne() {
        var window = ReceiveWindow(batch: 64)
        #expect(window.size == 64)
        window.received(1)  // the kernel looked again and found nothing behind it
        #expect(window.size == 1)
        #expect(window.narrowed)
        window.received(0)  // a poll that found nothing
        window.received(1)  // waited for: it came alone
        #expect(window.size == 1)
        window.received(1)  // found at once after another: there may be a queue
        #expect(window.size == 64)
        window.received(5)
        #expect(window.size == 64)
    }

    @Test func aWaitThatSleptKeepsAskingForOneAndOneThatFoundTrafficQueuedAsksForABatch() {
        var window = ReceiveWindow(batch: 64)
        window.received(1)
        window.received(1, slept: true)
        #expect(window.size == 1)
        window.received(0, slept: true)  // woken for a tick: nothing read, nothing changes
        #expect(window.size == 1)
        window.received(1, slept: false)
        #expect(window.size == 64)
    }

    @Test func aPollThatSleptMeansTheQueueWasEmpty() {
        var window = ReceiveWindow(batch: 64)
        window.received(1)
        window.received(1, slept: true)
        window.woke(slept: true)
        window.received(1)
        #expect(window.size == 1)
        window.woke(slept: false)  // ready at once: what it reads was queued
        window.received(1)
        #expect(window.size == 64)
    }

    @Test func aBatchOfOneNeedsNoClockToKnowWhatToAskFor() {
        var window = ReceiveWindow(batch: 1)
        window.received(1, slept: true)
        #expect(window.size == 1)
        #expect(!window.narrowed)
    }

    /// The cost of the window, seen from outside: a burst after a lone datagram takes two
    /// receives, one datagram and then the rest.
    @Test func aWorkerReadsALoneDatagramAloneAndABurstAfterItInTwoReceives() throws {
        var server = try TestServer("127.0.0.1:0", HelloReply())
        let client = try TestClient()
        defer { client.close() }
        #expect(server.worker.serveBatch() == 0)
        try client.send(Array("lone".utf8), to: server.address)
        server.serve(1)
        #expect(try client.receive()?.bytes == Array("Hello, lone!".utf8))
        for i in 0..<5 { try client.send(Array("\(i)".utf8), to: server.address) }
        #expect(server.worker.serveBatch() == 1)
        #expect(server.worker.serveBatch() == 4)
        #expect(server.worker.serveBatch() == 0)
        for i in 0..<5 { #expect(try client.receive()?.bytes == Array("Hello, \(i)!".utf8)) }
    }
}
