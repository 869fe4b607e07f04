import HelloDatagram
import HelloLauncher
import HelloReplies
import HelloService
import Testing

@Suite struct ReplyRuleTests {
    let hello = HelloReply()
    let echo = EchoReply()

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
        for rule in [hello, echo] as [any ReplyRule] {
            var out = [UInt8](repeating: 0, count: 32)
            let length = head.withUnsafeBytes { h in
                tail.withUnsafeBytes { t in
                    out.withUnsafeMutableBytes { rule.writeReply(to: h, continuation: t, at: $0.baseAddress!) }
                }
            }
            #expect(Array(out[..<length]) == rule.reply(to: Array("Michael".utf8)))
        }
    }

    @Test func theRequestInAReply() {
        for request in [[], Array("Michael".utf8), [0xff, 0x21, 0x00]] as [[UInt8]] {
            for rule in [hello, echo] as [any ReplyRule] {
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

    @Test func servicesByName() {
        #expect(ServiceName.allCases == [.hello, .echo, .chat])
        #expect(ServiceName(rawValue: "hello") == .hello && ServiceName(rawValue: "echo") == .echo)
        #expect(ServiceName(rawValue: "chat") == .chat)
        #expect(ServiceName.hello.replyRule?.reply(to: Array("Michael".utf8)) == Array("Hello, Michael!".utf8))
        #expect(ServiceName.echo.replyRule?.reply(to: Array("Michael".utf8)) == Array("Michael".utf8))
        #expect(ServiceName.chat.replyRule == nil)
        #expect(ServiceName.hello < .echo && !(ServiceName.echo < .hello))
    }
}

@Suite struct EndpointTests {
    @Test func v4MappedAddressesAreIPv4() {
        let mapped = Endpoint.v6(high: 0, low: 0xffff_7f00_0001, port: 4000)
        #expect(mapped == .v4(0x7f00_0001, port: 4000))
        #expect(mapped.family == .v4)
        #expect(mapped.description == "127.0.0.1:4000")
        #expect(mapped.largestPayload == 65507)
        #expect(IPAddress.v6(high: 0, low: 0xffff_0a00_0001) == .v4(0x0a00_0001))
        // Next to ::ffff:0:0/96 but not in it: IPv6.
        #expect(IPAddress.v6(high: 0, low: 0xfffe_0a00_0001).family == .v6)
        #expect(IPAddress.v6(high: 0, low: 0x1_ffff_0a00_0001).family == .v6)
        #expect(IPAddress.v6(high: 1, low: 0xffff_0a00_0001).family == .v6)
    }

    @Test func ipv6() {
        let loopback = Endpoint.v6(high: 0, low: 1, port: 53)
        #expect(loopback.family == .v6)
        #expect(loopback.address.isLoopback)
        #expect(loopback.largestPayload == 65527)
        #expect(loopback.description == "[0:0:0:0:0:0:0:1]:53")
        #expect(Endpoint.v6(high: 0x2001_0db8_0000_0000, low: 0xff, port: 1).description == "[2001:db8:0:0:0:0:0:ff]:1")
    }

    @Test func loopback() {
        #expect(Endpoint.v4(0x7f01_0203, port: 1).address.isLoopback)
        #expect(!Endpoint.v4(0x0a00_0001, port: 1).address.isLoopback)
        #expect(!IPAddress.v6(high: 0, low: 2).isLoopback)
        #expect(!IPAddress.v6(high: 1, low: 1).isLoopback)
    }

    @Test func multicastBroadcastLinkLocal() {
        #expect(IPAddress.v4(0xe000_0001).isMulticast)  // 224.0.0.1
        #expect(IPAddress.v4(0xefff_fffa).isMulticast)  // 239.255.255.250
        #expect(!IPAddress.v4(0xdfff_ffff).isMulticast)  // 223.255.255.255
        #expect(!IPAddress.v4(0xf000_0000).isMulticast)  // 240.0.0.0
        #expect(IPAddress.v6(high: 0xff02 << 48, low: 1).isMulticast)  // ff02::1
        #expect(!IPAddress.v6(high: 0xfe80 << 48, low: 1).isMulticast)
        #expect(IPAddress.v4(0xffff_ffff).isLimitedBroadcast)
        #expect(!IPAddress.v4(0xc000_02ff).isLimitedBroadcast)  // a subnet's broadcast needs its netmask
        #expect(!IPAddress.v6(high: ~0, low: ~0).isLimitedBroadcast)
        #expect(IPAddress.v6(high: 0xfe80 << 48, low: 1).isLinkLocal)  // fe80::/10 ...
        #expect(IPAddress.v6(high: 0xfebf << 48, low: 1).isLinkLocal)
        #expect(!IPAddress.v6(high: 0xfec0 << 48, low: 1).isLinkLocal)  // ... ends before fec0::
        #expect(!IPAddress.v6(high: 0xfe7f << 48, low: 1).isLinkLocal)
        #expect(!IPAddress.v4(0xa9fe_0001).isLinkLocal)  // 169.254.0.1: no interface needed
        #expect(IPAddress.v4(0).isUnspecified && IPAddress.v6(high: 0, low: 0).isUnspecified)
        #expect(!IPAddress.v6(high: 0, low: 1).isUnspecified)
    }
}
