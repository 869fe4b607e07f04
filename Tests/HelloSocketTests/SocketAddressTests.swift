import Glibc
import HelloSocket
import Testing

@Suite struct SocketAddressTests {
    @Test(arguments: [
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

    @Test func peers() {
        #expect(SocketAddress(parsing: "127.0.0.2:7")!.peer.description == "127.0.0.2:7")
        #expect(SocketAddress(parsing: "[::ffff:10.1.2.3]:8")!.peer.description == "10.1.2.3:8")
        #expect(SocketAddress(parsing: "[::1]:9")!.peer.family == .v6)
    }

    @Test func resolvesNames() throws {
        let addresses = try SocketAddress.resolve(host: "localhost", port: 9999)
        #expect(addresses.contains { $0.description == "127.0.0.1:9999" || $0.description == "[::1]:9999" })
    }
}
