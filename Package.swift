// swift-tools-version:6.0
import PackageDescription

// hellod: a UDP daemon that answers every datagram, each socket with its own service.
// Licensed under the Apache License, Version 2.0 (LICENSE); NOTICE carries what the
// linked packages' licences require to travel with the binaries.
//
//   CShims         C, thin: recvmmsg/sendmmsg, CMSG_* as functions, constants and layouts
//                  checked against the system's headers; no policy
//   CSystemd       libsystemd (sd_listen_fds, sd_notify, sd_journal): linked by hellod only
//   HelloDatagram  Swift, no syscalls, no protocol: what both sides speak. Addresses and
//                  endpoints, the received Datagram, the Outbox a service writes, the PKTINFO
//                  policy (reply source, broadcast or not), segment planning, peer grouping
//   HelloSocket    the socket layer (imports no service): descriptors, sockaddrs, the
//                  syscall wrapper, ReceiveBatch (recvmmsg) and SendBatch (sendmmsg, GSO)
//   HelloChatWire  Swift, no syscalls, no dependencies: the chat protocol's bytes (messages,
//                  encoders into caller buffers, events read in place), its name policy and
//                  SHA-256; what the relay, the client and the load generator all speak
//   HelloClient    Swift, no syscalls: the chat client as a reducer (inputs in, effects out),
//                  its line editor, the neutraliser of what the network sends, the room order
//   HelloService   Swift, no syscalls: the service interface (DatagramService), the counter
//                  schema each service declares and the counters' fixed block, admission
//                  and rate limits
//   HelloReplies   hello and echo
//   HelloChat      the chat relay (swift-atomics: the chat workers' shared cap on answers
//                  to unproven sources)
//   HelloLauncher  ServiceName, the one place that knows the list of services and builds
//                  one by name
//   HelloServer    the worker, the join: receive a batch, hand it to the socket's service,
//                  send what it wrote, publish counters; knows no service by name
//   HelloCLI       what both executables share on the command line
//   hellod         the daemon: arguments, activation or bind, workers, signals, sd_notify, logs,
//                  the metrics file (swift-prometheus)
//   hello          the client: greetings, the chat client and the load generator (hello bench)

let package = Package(
    name: "hellod",
    products: [
        .executable(name: "hellod", targets: ["hellod"]),
        .executable(name: "hello", targets: ["hello"]),
        .library(name: "HelloDatagram", targets: ["HelloDatagram"]),
        .library(name: "HelloChatWire", targets: ["HelloChatWire"]),
        .library(name: "HelloService", targets: ["HelloService"]),
        .library(name: "HelloReplies", targets: ["HelloReplies"]),
        .library(name: "HelloChat", targets: ["HelloChat"]),
        .library(name: "HelloLauncher", targets: ["HelloLauncher"]),
        .library(name: "HelloSocket", targets: ["HelloSocket"]),
        .library(name: "HelloServer", targets: ["HelloServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-atomics", exact: "1.3.0"),
        .package(url: "https://github.com/apple/swift-system", exact: "1.8.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", exact: "0.2.0"),
        // The Prometheus text format for --metrics-file. It brings swift-metrics (2.13.0 here)
        // for its CoreMetrics module only, not Metrics, which pulls in FoundationEssentials.
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CSystemd",
            path: "CShims/libsystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .target(
            name: "CShims",
            path: "CShims",
            exclude: ["libsystemd"],
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(name: "HelloDatagram"),
        .target(name: "HelloChatWire"),
        .target(name: "HelloClient", dependencies: ["HelloChatWire"]),
        .target(name: "HelloService", dependencies: ["HelloDatagram"]),
        .target(name: "HelloReplies", dependencies: ["HelloDatagram", "HelloService"]),
        .target(
            name: "HelloChat",
            dependencies: ["HelloDatagram", "HelloChatWire", "HelloService", .product(name: "Atomics", package: "swift-atomics")]
        ),
        .target(name: "HelloLauncher", dependencies: ["HelloService", "HelloReplies", "HelloChat"]),
        .target(
            name: "HelloSocket",
            dependencies: [
                "CShims", "HelloDatagram",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "HelloServer",
            dependencies: [
                "HelloDatagram", "HelloService", "HelloSocket",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "HelloCLI",
            dependencies: [
                "HelloLauncher", "HelloSocket",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "hellod",
            dependencies: [
                "CSystemd", "HelloDatagram", "HelloChatWire", "HelloService", "HelloChat", "HelloLauncher", "HelloSocket",
                "HelloServer", "HelloCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "hello",
            dependencies: [
                "HelloDatagram", "HelloChatWire", "HelloClient", "HelloService", "HelloReplies", "HelloLauncher", "HelloSocket", "HelloCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .testTarget(name: "HelloChatWireTests", dependencies: ["HelloChatWire"]),
        .testTarget(name: "HelloClientTests", dependencies: ["HelloChatWire", "HelloClient"]),
        // The fuzz harness (seeds, budgets, replay) that the services' property tests share.
        .target(name: "HelloFuzzHarness", path: "Tests/HelloFuzzHarness"),
        .testTarget(name: "HelloServiceTests", dependencies: ["HelloDatagram", "HelloService", "HelloFuzzHarness"]),
        .testTarget(
            name: "HelloRepliesTests",
            dependencies: ["HelloDatagram", "HelloService", "HelloReplies", "HelloLauncher", "HelloFuzzHarness"]
        ),
        .testTarget(
            name: "HelloChatTests",
            dependencies: ["HelloDatagram", "HelloChatWire", "HelloService", "HelloChat", "HelloFuzzHarness"]
        ),
        .testTarget(
            name: "HelloSocketTests",
            dependencies: [
                "HelloDatagram", "HelloChatWire", "HelloSocket", "HelloService", "HelloReplies", "HelloChat", "HelloLauncher",
                "HelloServer", "CShims",
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
    ]
)
