// swift-tools-version: 6.1
import PackageDescription

// Allocation benchmarks for hellod's datagram path, kept out of the main package so that
// its users never resolve or build package-benchmark.
//
//   cd Benchmarks
//   swift package benchmark                     # build (release), run, print the tables
//   swift package benchmark thresholds check --target DatagramPath   # the same, then fail on any malloc (Thresholds/)
//   swift package benchmark --target AEADSeal   # ns per AEAD seal (docs/SECURITY.md): not gated
//
// The benchmarks open UDP sockets on loopback: on macOS that would need --disable-sandbox
// (Linux runs plugins unsandboxed); hellod is Linux-only anyway.
let package = Package(
    name: "hellod-benchmarks",
    dependencies: [
        // hellod itself, whatever its checkout directory is called.
        .package(name: "hellod", path: ".."),
        // The MallocInterposer trait alone: counts mallocs through an LD_PRELOADed
        // interposer (Swift 6.3+), no jemalloc. Leaving out the default RuntimeInterposer
        // trait also leaves out its package, which ARC counting on Linux 6.3 would need.
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
        // Its counters, read directly to report mallocs per datagram (the same dynamic
        // library package-benchmark reads; 1.5.0 is benchmark 1.38.1's own lower bound).
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.5.0"),
        // The AEADs an encrypted chat transport would use (docs/SECURITY.md), for AEADSeal
        // alone: hellod's own package does not depend on it.
        .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
    ],
    targets: [
        .executableTarget(
            name: "DatagramPath",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
                .product(name: "HelloChatWire", package: "hellod"),
                .product(name: "HelloService", package: "hellod"),
                .product(name: "HelloChat", package: "hellod"),
                .product(name: "HelloLauncher", package: "hellod"),
                .product(name: "HelloSocket", package: "hellod"),
                .product(name: "HelloServer", package: "hellod"),
            ],
            path: "Benchmarks/DatagramPath",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark")
            ]
        ),
        // One seal per delivery: what encrypting the chat would cost the relay. Not part of
        // the malloc gate (the Makefile runs --target DatagramPath), so the gate's build
        // never compiles swift-crypto's BoringSSL.
        .executableTarget(
            name: "AEADSeal",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Benchmarks/AEADSeal",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark")
            ]
        ),
    ]
)
