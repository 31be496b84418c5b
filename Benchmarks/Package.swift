// swift-tools-version:6.1
// Benchmarks live in their own package so the main build and CI never pay for the benchmark toolchain.
// Run: cd Benchmarks && swift package benchmark
import PackageDescription

let package = Package(
    name: "JumpgateBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "jumpgate", path: "../"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "WireBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "JumpgateWire", package: "jumpgate"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/WireBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "HandlerBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "JumpgateWire", package: "jumpgate"),
                .product(name: "JumpgateNIO", package: "jumpgate"),
                .product(name: "JumpgateGateway", package: "jumpgate"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/HandlerBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // Not a package-benchmark suite: a forwarder for tunnelbench (scripts/bench-nio-chain).
        .executableTarget(
            name: "NIOChain",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "NIOChain"
        ),
        // Not a package-benchmark suite either: a relay whose bytes stay in the kernel (eBPF sockmap), for
        // scripts/bench-nio-chain with NIO_CHAIN_E2E=kernel.
        .executableTarget(name: "KernelRelay", path: "KernelRelay"),
        // A relay whose bytes go socket -> pipe -> socket with splice(2), for NIO_CHAIN_E2E=splice.
        .executableTarget(name: "SpliceRelay", path: "SpliceRelay"),
    ]
)
