// swift-tools-version: 6.1
import PackageDescription

// Allocation benchmarks for hellod's datagram path, kept out of the main package so that
// its users never resolve or build package-benchmark.
//
//   cd Benchmarks
//   swift package benchmark                     # build (release), run, print the tables
//   swift package benchmark thresholds check    # the same, then fail on any malloc (Thresholds/)
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
    ],
    targets: [
        .executableTarget(
            name: "DatagramPath",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
                .product(name: "HelloCore", package: "hellod"),
                .product(name: "HelloSocket", package: "hellod"),
                .product(name: "HelloServer", package: "hellod"),
            ],
            path: "Benchmarks/DatagramPath",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
