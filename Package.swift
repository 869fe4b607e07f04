// swift-tools-version:6.0
import PackageDescription

// hellod: a UDP daemon that answers every datagram.
//
//   CShims        C: recvmmsg/sendmmsg, cmsg and sockaddr helpers, libsystemd calls
//   HelloCore     Swift, no syscalls: the reply rules, applied in buffers allocated once
//   HelloSocket   the socket layer: descriptors, addresses, preallocated message batches
//   HelloServer   the I/O loop joining the two: receive a batch, reply, send
//   HelloCLI      what both executables share on the command line
//   hellod        the daemon: arguments, activation or bind, workers, signals, sd_notify, logs
//   hello         the client and the load generator

let package = Package(
    name: "hellod",
    products: [
        .executable(name: "hellod", targets: ["hellod"]),
        .executable(name: "hello", targets: ["hello"]),
        .library(name: "HelloCore", targets: ["HelloCore"]),
        .library(name: "HelloSocket", targets: ["HelloSocket"]),
        .library(name: "HelloServer", targets: ["HelloServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-atomics", exact: "1.3.0"),
        .package(url: "https://github.com/apple/swift-system", exact: "1.8.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", exact: "0.2.0"),
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
            dependencies: ["CSystemd"],
            path: "CShims",
            exclude: ["libsystemd"],
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(name: "HelloCore"),
        .target(
            name: "HelloSocket",
            dependencies: [
                "CShims", "HelloCore",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "HelloServer",
            dependencies: [
                "CShims", "HelloCore", "HelloSocket",
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        .target(
            name: "HelloCLI",
            dependencies: [
                "HelloCore", "HelloSocket",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "hellod",
            dependencies: [
                "CShims", "HelloCore", "HelloSocket", "HelloServer", "HelloCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        .executableTarget(
            name: "hello",
            dependencies: [
                "CShims", "HelloCore", "HelloSocket", "HelloCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .testTarget(name: "HelloCoreTests", dependencies: ["HelloCore"]),
        .testTarget(
            name: "HelloSocketTests",
            dependencies: [
                "HelloSocket", "HelloCore", "HelloServer", "CShims",
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
    ]
)
