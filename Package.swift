// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// The executables carry the Swift runtime and the parts of Foundation they use (`-static-stdlib`), so that
// `jumpgate` and `session-manager-plugin` run on a Linux jump server or laptop without a Swift toolchain:
// they need only glibc (2.35 or newer for a build on Debian 12), libm, libgcc_s and libstdc++ (GCC 11 or
// newer) (LinkedLibrariesTests). It also makes each message cheaper: calls into the runtime (retain,
// release, the exclusivity checks' thread-local access set) go straight to it, not through the PLT and
// `__tls_get_addr` (docs/PERFORMANCE.md, "fourteenth session"). Only their link changes: the test bundle
// keeps the shared runtime (swift-testing has no static library), so one build serves both. Modules
// compiled for a shared runtime do not name the archives FoundationEssentials' static library needs, so
// they are named here, as Swift 6.3.1 lays them out (a toolchain that renames one fails this link, loudly).
// lld links because gold warns about the `mktemp` that archive references; either would link correctly.
// lld also lays the binary's code out by Linker/jumpgate.order (scripts/symbol-order): the functions the
// gateway, the agent and `jumpgate forward` run come first, so each process maps less of the binary; names
// the binary no longer has are skipped, silently (session-manager-plugin gets the same order: the code it
// shares with them comes first; not measured). And it exports no symbols: the toolchain's static-stdlib
// link passes `-export-dynamic`, which put 53,000 of them (5 MB of symbol tables the dynamic loader reads
// at every start) in the binary. Nothing here looks its own symbols up; what would now find nothing:
// `dlsym` on the executable (NIO's `unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor`
// would return false; unused) and `dladdr` names in the runtime's in-process backtraces (the crash
// backtracer reads the binary's own symbol table instead). Together about 10 MiB less idle PSS for the three
// processes (docs/PERFORMANCE.md, "twenty-first session"; CodeLayoutTests).
// `scripts/sanitize` sets JUMPGATE_SHARED_RUNTIME: ThreadSanitizer dies as a binary that carries the
// runtime exits (docs/RELIABILITY.md), so sanitized executables keep the shared one.
let sharedRuntime = Context.environment["JUMPGATE_SHARED_RUNTIME"] != nil
let executableLinking: [LinkerSetting] =
    sharedRuntime
    ? []
    : [
        .unsafeFlags(["-static-stdlib", "-use-ld=lld"], .when(platforms: [.linux])),
        .unsafeFlags(
            [
                "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Linker/jumpgate.order",
                "-Xlinker", "--no-warn-symbol-ordering", "-Xlinker", "--no-export-dynamic",
            ],
            .when(platforms: [.linux])
        ),
        .linkedLibrary("_FoundationCShims", .when(platforms: [.linux])),
        .linkedLibrary("_FoundationCollections", .when(platforms: [.linux])),
        .linkedLibrary("swiftSynchronization", .when(platforms: [.linux])),
    ]

let package = Package(
    name: "jumpgate",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "jumpgate", targets: ["Jumpgate"]),
        .executable(name: "session-manager-plugin", targets: ["SessionManagerPlugin"]),
        .library(name: "JumpgateWire", targets: ["JumpgateWire"]),
        .library(name: "JumpgateNIO", targets: ["JumpgateNIO"]),
        .library(name: "JumpgateGateway", targets: ["JumpgateGateway"]),
        .library(name: "JumpgateAgent", targets: ["JumpgateAgent"]),
        .library(name: "JumpgateClient", targets: ["JumpgateClient"]),
        .library(name: "JumpgateAccess", targets: ["JumpgateAccess"]),
        .library(name: "JumpgateTestUtilities", targets: ["JumpgateTestUtilities"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // The pure protocol library: codecs and state machines, no sockets, no Foundation.
        .target(
            name: "JumpgateWire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // NIO channel handlers that carry out the wire library's actions, shared by gateway, agent, client.
        .target(
            name: "JumpgateNIO",
            dependencies: [
                "JumpgateWire",
                "CJumpgateHeap",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "JumpgateGateway",
            dependencies: [
                "JumpgateWire",
                "JumpgateNIO",
                "JumpgateAccess",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // posix_openpt and friends, and POSIX_SPAWN_SETSID, which need _GNU_SOURCE (not set for Swift's Glibc
        // module).
        .target(name: "CJumpgatePTY"),
        .target(name: "CJumpgateHeap"),
        // Termination signals caught by a handler that records them at once (TerminationSignal).
        .target(name: "CJumpgateSignals"),
        .target(
            name: "JumpgateAgent",
            dependencies: [
                "JumpgateWire",
                "JumpgateNIO",
                "CJumpgatePTY",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "JumpgateClient",
            dependencies: [
                "CJumpgateSignals",
                "JumpgateWire",
                "JumpgateNIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Jumpgate",
            dependencies: [
                "CJumpgatePTY",
                "JumpgateStaticRuntime",
                "JumpgateWire",
                "JumpgateAccess",
                "JumpgateGateway",
                "JumpgateAgent",
                "JumpgateClient",
                "JumpgateNIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "SessionManagerPlugin",
            dependencies: [
                "JumpgateClient",
                "JumpgateStaticRuntime",
                "JumpgateNIO",
                "JumpgateWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "JumpgateStaticRuntime",
            swiftSettings: swiftSettings,
            linkerSettings: executableLinking
        ),
        .target(
            name: "JumpgateAccess",
            dependencies: ["JumpgateWire"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "JumpgateTestUtilities",
            dependencies: [
                "JumpgateWire",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "JumpgateWireTests",
            dependencies: [
                "JumpgateWire",
                "JumpgateTestUtilities",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        // The session handlers back to back over EmbeddedChannels: no sockets.
        .testTarget(
            name: "JumpgateNIOTests",
            dependencies: [
                "JumpgateNIO",
                "JumpgateTestUtilities",
                "JumpgateWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "JumpgateAccessTests",
            dependencies: [
                "JumpgateAccess",
                "JumpgateWire",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "JumpgateIntegrationTests",
            dependencies: [
                "JumpgateWire",
                "JumpgateTestUtilities",
                "JumpgateAccess",
                "JumpgateClient",
                "JumpgateNIO",
                "JumpgateGateway",
                "JumpgateAgent",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "JumpgateCLITests",
            dependencies: [
                "JumpgateWire",
                "JumpgateTestUtilities",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
