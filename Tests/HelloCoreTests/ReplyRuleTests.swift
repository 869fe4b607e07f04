import HelloCore
import Testing

@Suite struct ReplyRuleTests {
    let hello = ReplyRule(mode: .hello)
    let echo = ReplyRule(mode: .echo)

    @Test func helloGreetsTheName() {
        #expect(hello.reply(to: Array("Michael".utf8)) == Array("Hello, Michael!".utf8))
    }

    @Test func echoReturnsTheRequest() {
        #expect(echo.reply(to: Array("Michael".utf8)) == Array("Michael".utf8))
    }

    @Test func emptyRequest() {
        #expect(hello.reply(to: []) == Array("Hello, !".utf8))
        #expect(echo.reply(to: []) == [])
    }

    @Test func oneByte() {
        #expect(hello.reply(to: [0x41]) == Array("Hello, A!".utf8))
        #expect(echo.reply(to: [0x00]) == [0x00])
    }

    @Test func bytesThatAreNotUTF8AreAnsweredByteForByte() {
        let request: [UInt8] = [0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80]
        #expect(hello.reply(to: request) == Array("Hello, ".utf8) + request + [UInt8(ascii: "!")])
        #expect(echo.reply(to: request) == request)
    }

    @Test func theLargestRequest() {
        let request = (0..<65527).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let reply = hello.reply(to: request)
        #expect(reply.count == 65535)
        #expect(reply.prefix(7).elementsEqual("Hello, ".utf8))
        #expect(reply.dropFirst(7).dropLast().elementsEqual(request))
        #expect(reply.last == UInt8(ascii: "!"))
        #expect(echo.reply(to: request) == request)
    }

    @Test func aRequestInTwoPartsIsAnsweredAsOne() {
        let head = Array("Mich".utf8), tail = Array("ael".utf8)
        for rule in [hello, echo] {
            var out = [UInt8](repeating: 0, count: 32)
            let length = head.withUnsafeBytes { h in
                tail.withUnsafeBytes { t in out.withUnsafeMutableBytes { rule.writeReply(to: h, continuation: t, at: $0.baseAddress!) } }
            }
            #expect(Array(out[..<length]) == rule.reply(to: Array("Michael".utf8)))
        }
    }

    @Test func theRequestInAReply() {
        for request in [[], Array("Michael".utf8), [0xff, 0x21, 0x00]] as [[UInt8]] {
            for rule in [hello, echo] {
                let reply = rule.reply(to: request)
                #expect(reply.withUnsafeBytes { rule.request(inReply: $0).map(Array.init) } == request)
            }
        }
        for notHello in ["Hello, Michael", "Hi, Michael!", "Hello,!", ""] {
            #expect(Array(notHello.utf8).withUnsafeBytes { hello.request(inReply: $0) } == nil)
        }
    }

    @Test func replyLengths() {
        #expect(hello.replyLength(forRequestOf: 0) == 8)
        #expect(hello.replyLength(forRequestOf: 65499) == 65507)
        #expect(echo.replyLength(forRequestOf: 65527) == 65527)
    }
}

@Suite struct PeerAddressTests {
    @Test func v4MappedAddressesAreIPv4() {
        let mapped = PeerAddress.v6(high: 0, low: 0xffff_7f00_0001, port: 4000)
        #expect(mapped == .v4(0x7f00_0001, port: 4000))
        #expect(mapped.description == "127.0.0.1:4000")
        #expect(mapped.largestPayload == 65507)
    }

    @Test func ipv6() {
        let loopback = PeerAddress.v6(high: 0, low: 1, port: 53)
        #expect(loopback.family == .v6)
        #expect(loopback.isLoopback)
        #expect(loopback.largestPayload == 65527)
        #expect(loopback.description == "[0:0:0:0:0:0:0:1]:53")
    }

    @Test func loopback() {
        #expect(PeerAddress.v4(0x7f01_0203, port: 1).isLoopback)
        #expect(!PeerAddress.v4(0x0a00_0001, port: 1).isLoopback)
    }
}
