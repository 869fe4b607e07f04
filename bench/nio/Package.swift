// swift-tools-version:6.0
// A SwiftNIO UDP server for bench/compare.py --nio: the Swift peer a user might pick
// instead of hellod. A package of its own, built only by the bench (into .build-nio/),
// never by ./test.sh or make build.
import PackageDescription

let package = Package(
    name: "nio-server",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3")
    ],
    targets: [
        .executableTarget(
            name: "nio-server",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        )
    ]
)
