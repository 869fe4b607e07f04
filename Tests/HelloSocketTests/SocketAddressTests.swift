import Glibc
import HelloChat
import HelloDatagram
import HelloLauncher
import HelloReplies
import HelloServer
import HelloService
import HelloSocket
import Testing

@Suite struct SocketAddressTests {
    @Test(
        arguments: [
            ("127.0.0.1:9999", "127.0.0.1:9999"),
            ("[::1]:9999", "[::1]:9999"),
            ("0.0.0.0:53", "0.0.0.0:53"),
            ("[::]:1", "[::]:1"),
            ("9999", "[::]:9999"),
            (":9999", "[::]:9999"),
            ("[fe80::1%lo]:1", nil),
            ("localhost:9999", nil),
            ("127.0.0.1", nil),
            ("127.0.0.1:65536", nil),
            ("::1:9999", nil),
            ("[::1]", nil),
            ("[127.0.0.1]:1", nil),
            ("", nil),
            ("1.2.3.4:-1", nil),
        ] as [(String, String?)])
    func parsing(text: String, expected: String?) {
        #expect(SocketAddress(parsing: text)?.description == expected)
    }

    @Test func wildcards() {
        #expect(SocketAddress(parsing: "0.0.0.0:1")!.isWildcard)
        #expect(SocketAddress(parsing: "[::]:1")!.isWildcard)
        #expect(!SocketAddress(parsing: "127.0.0.1:1")!.isWildcard)
        #expect(!SocketAddress(parsing: "[::1]:1")!.isWildcard)
    }

    @Test func endpoints() {
        #expect(SocketAddress(parsing: "127.0.0.2:7")!.endpoint.description == "127.0.0.2:7")
        #expect(SocketAddress(parsing: "[::ffff:10.1.2.3]:8")!.endpoint.description == "10.1.2.3:8")
        #expect(SocketAddress(parsing: "[::1]:9")!.endpoint.family == .v6)
        #expect(
            SocketAddress(parsing: "[2001:db8::ff]:10")!.endpoint == .v6(high: 0x2001_0db8 << 32, low: 0xff, port: 10))
    }

    @Test func resolvesNames() throws {
        let addresses = try SocketAddress.resolve(host: "localhost", port: 9999)
        #expect(addresses.contains { $0.description == "127.0.0.1:9999" || $0.description == "[::1]:9999" })
    }

    @Test func aNameThatCannotResolveThrows() {
        // .invalid never resolves (RFC 6761).
        do {
            let found = try SocketAddress.resolve(host: "no-such-host.invalid", port: 9999)
            Issue.record("resolved to \(found)")
        } catch {
            #expect(error.host == "no-such-host.invalid")
            #expect(error.code != 0)
            #expect(error.description.hasPrefix("cannot resolve no-such-host.invalid: "))
        }
    }

    /// An endpoint written for a socket of either family, and read back.
    @Test(
        arguments: [
            (Endpoint.v4(0x7f00_0001, port: 9999), AF_INET, "127.0.0.1:9999"),
            (Endpoint.v4(0x7f00_0001, port: 9999), AF_INET6, "[::ffff:127.0.0.1]:9999"),
            (Endpoint.v4(0xc000_02ff, port: 1), AF_INET6, "[::ffff:192.0.2.255]:1"),
            (Endpoint.v6(high: 0, low: 1, port: 53), AF_INET6, "[::1]:53"),
            (
                Endpoint.v6(high: 0xfe80 << 48, low: 0x0211_22ff_fe33_4455, port: 65535), AF_INET6,
                "[fe80::211:22ff:fe33:4455]:65535"
            ),
        ] as [(Endpoint, Int32, String)])
    func endpointsRoundTrip(endpoint: Endpoint, family: Int32, expected: String) {
        let address = SocketAddress(endpoint, socketFamily: family)
        #expect(address.family == family)
        #expect(address.description == expected)
        #expect(address == SocketAddress(parsing: expected))
        #expect(address.endpoint == endpoint)
        #expect(address.port == endpoint.port)
    }

    @Test func endpointsFromSockaddrs() {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(4000).bigEndian
        sin.sin_addr.s_addr = UInt32(0xc000_0201).bigEndian
        #expect(read(sin) == .v4(0xc000_0201, port: 4000))
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = UInt16(4001).bigEndian
        sin6.sin6_addr = in6_addr(
            __in6_u: .init(__u6_addr8: (0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42)))
        #expect(read(sin6) == .v6(high: 0x2001_0db8 << 32, low: 0x42, port: 4001))
        sin6.sin6_addr = in6_addr(__in6_u: .init(__u6_addr8: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3)))
        #expect(read(sin6) == .v4(0x0a01_0203, port: 4001))  // v4-mapped: IPv4
        var other = sockaddr_storage()
        other.ss_family = sa_family_t(AF_UNIX)
        #expect(read(other) == .v4(0, port: 0))
    }

    func read<T>(_ sockaddr: T) -> Endpoint {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sockaddr, as: T.self) }
        return withUnsafePointer(to: storage) { Endpoint(sockaddr: $0) }
    }

    /// Over real sockets: a dual-stack client reaches an IPv4 server through the endpoint
    /// written v4-mapped, and reads the reply's source back as the same IPv4 endpoint.
    @Test func aV4MappedEndpointReachesAnIPv4Socket() throws {
        let server = try DatagramSocket.bound(to: SocketAddress(parsing: "127.0.0.1:0")!)
        let client = try TestClient(family: AF_INET6)
        defer { try? server.close(); client.close() }
        let serverEndpoint = try server.localAddress().endpoint
        #expect(serverEndpoint.family == .v4 && serverEndpoint.address == .v4(0x7f00_0001))
        try client.send(Array("there".utf8), to: SocketAddress(serverEndpoint, socketFamily: AF_INET6))
        let heard = try #require(try TestClient(adopting: server).receive())
        #expect(heard.bytes == Array("there".utf8))
        #expect(heard.from.family == AF_INET)
        let clientPort = try client.socket.localAddress().port
        #expect(heard.from.endpoint == .v4(0x7f00_0001, port: clientPort))
        // And back, written for the server's family.
        try TestClient(adopting: server).send(
            Array("back".utf8), to: SocketAddress(heard.from.endpoint, socketFamily: AF_INET))
        let back = try #require(try client.receive())
        #expect(back.bytes == Array("back".utf8))
        #expect(back.from.family == AF_INET6)
        #expect(back.from.description == "[::ffff:127.0.0.1]:\(serverEndpoint.port)")
        #expect(back.from.endpoint == serverEndpoint)
    }

    /// getsockname on a descriptor that is not a socket fails, and says so, rather than
    /// reading as a wildcard address. (A closed descriptor is EBADF, which stops hellod as
    /// a bug of its own.)
    @Test func theLocalAddressOfSomethingElseThrows() throws {
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        defer { ends.forEach { _ = Glibc.close($0) } }
        let pipe = DatagramSocket(adoptingRaw: ends[0])
        #expect(throws: SocketError(call: "getsockname", errno: .notSocket)) { try pipe.localAddress() }
        let error = #expect(throws: SocketError.self) { try pipe.receivePacketInfo() }
        #expect(error?.errno == .notSocket)
        // So a worker cannot be built on it.
        let configuration = WorkerConfiguration()
        #expect(throws: SocketError(call: "getsockname", errno: .notSocket)) {
            _ = try Worker(
                index: 0, socket: pipe,
                service: ReplyService(HelloReply(), configuration.serviceSettings(policy: .open)),
                configuration: configuration, publishingTo: PublishedReport())
        }
    }

    @Test func closingADescriptorThatIsNotOpenThrows() {
        // No descriptor is ever this high (RLIMIT_NOFILE is far lower): closing it touches
        // no other test's descriptor.
        let never = DatagramSocket(adoptingRaw: Int32.max)
        #expect(throws: SocketError(call: "close", errno: .badFileDescriptor)) { try never.close() }
    }
}

extension DatagramSocket {
    /// `init(adopting:)` from a raw descriptor, without naming swift-system's
    /// FileDescriptor (this target does not depend on swift-system).
    init(adoptingRaw descriptor: Int32) {
        func make<D: RawRepresentable<Int32>>(_: KeyPath<DatagramSocket, D>) -> D { D(rawValue: descriptor)! }
        self.init(adopting: make(\.descriptor))
    }
}
