// What an encrypted chat transport would cost the relay per delivery (docs/SECURITY.md,
// "An encrypted transport"): each member has its own key, so a message to a room of N is
// N seals of the EVENTS datagram, one per member. This measures one seal, with swift-crypto's
// ChaCha20-Poly1305 and AES-GCM, of a datagram of a short message event (64 bytes) and of
// a full one (1232 bytes), the nonce a counter as it would be on the wire; and, for the
// comparison in the same run, one send(2) of the same datagram on loopback.
//
// Not gated: `make bench-malloc` runs the DatagramPath target only (`--target DatagramPath`),
// so the gate's build never compiles swift-crypto. Run it with
//
//   cd Benchmarks && swift package benchmark --target AEADSeal
//
// One iteration is 1000 seals: its time in microseconds is nanoseconds per seal.

import Benchmark
import Crypto
import Glibc

/// Seals per iteration.
let sealsPerIteration = 1000

/// The datagram sizes measured: a 64-byte message event, and the largest datagram.
let sizes = [64, 1232]

let benchmarks: @Sendable () -> Void = {
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .microseconds,
        warmupIterations: 10,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 10_000
    )
    for size in sizes {
        let plaintext = [UInt8](repeating: 0x6d, count: size)
        let header = [UInt8](repeating: 0, count: 18)  // what stays in clear: version, type, receiver, counter

        let chachaKey = SymmetricKey(size: .bits256)
        Benchmark("ChaChaPoly-seal-\(size)-bytes-x\(sealsPerIteration)", configuration: configuration) { benchmark in
            var counter = NonceCounter()
            for _ in 0..<sealsPerIteration {
                let nonce = try ChaChaPoly.Nonce(data: counter.next())
                blackHole(try ChaChaPoly.seal(plaintext, using: chachaKey, nonce: nonce, authenticating: header))
            }
        }

        // The same run's yardstick: what the relay pays per delivery today is nearly all
        // the kernel's send (PERFORMANCE.md, "The chat relay"). One send(2) of the
        // datagram on loopback, to a socket drained outside the measured time.
        Benchmark("Loopback-send-\(size)-bytes-x\(sealsPerIteration)", configuration: configuration) { benchmark in
            let pair = LoopbackPair()
            defer { pair.close() }
            benchmark.startMeasurement()
            for _ in 0..<sealsPerIteration { pair.send(plaintext) }
            benchmark.stopMeasurement()
            pair.drain()
        }

        let aesKey = SymmetricKey(size: .bits256)
        Benchmark("AES-GCM-256-seal-\(size)-bytes-x\(sealsPerIteration)", configuration: configuration) { benchmark in
            var counter = NonceCounter()
            for _ in 0..<sealsPerIteration {
                let nonce = try AES.GCM.Nonce(data: counter.next())
                blackHole(try AES.GCM.seal(plaintext, using: aesKey, nonce: nonce, authenticating: header))
            }
        }
    }
}

/// The 96-bit nonce: 4 zero bytes and the 64-bit datagram counter, as Noise and WireGuard
/// make it (little-endian, as Noise's ChaChaPoly does), in one buffer reused.
struct NonceCounter {
    var counter: UInt64 = 0
    var bytes = [UInt8](repeating: 0, count: 12)

    mutating func next() -> [UInt8] {
        counter &+= 1
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: counter.littleEndian, toByteOffset: 4, as: UInt64.self) }
        return bytes
    }
}

/// A UDP socket on 127.0.0.1 connected to another, whose receive buffer holds a whole
/// iteration's datagrams (SO_RCVBUFFORCE: root, as the other benchmarks).
struct LoopbackPair {
    let sender: Int32
    let receiver: Int32

    init() {
        receiver = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        sender = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var size: Int32 = 16 << 20
        setsockopt(receiver, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                precondition(bind(receiver, $0, length) == 0 && getsockname(receiver, $0, &length) == 0)
                precondition(connect(sender, $0, length) == 0)
            }
        }
    }

    func send(_ bytes: [UInt8]) {
        let sent = bytes.withUnsafeBytes { Glibc.send(sender, $0.baseAddress, $0.count, 0) }
        precondition(sent == bytes.count, "send: errno \(errno)")
    }

    func drain() {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while buffer.withUnsafeMutableBytes({ recv(receiver, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) >= 0 {}
    }

    func close() {
        _ = Glibc.close(sender)
        _ = Glibc.close(receiver)
    }
}
