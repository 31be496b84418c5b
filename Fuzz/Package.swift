// swift-tools-version:6.1
// libFuzzer targets for every parser that takes outside bytes. A package of its own: SwiftPM links an
// executable's entry point as `<Module>_main`, and each target here defines that symbol to hand control to
// libFuzzer's driver, which would clash with the main package's executables. Built and run by
// `scripts/fuzz` (see docs/RELIABILITY.md); never by `swift build` in the main package.
import Foundation
import PackageDescription

// The main package is this directory's parent; SwiftPM names a path dependency after its directory.
let parent = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let jumpgate = parent.lastPathComponent

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzSupport"] + dependencies, swiftSettings: swiftSettings)
}

let wire = Target.Dependency.product(name: "JumpgateWire", package: jumpgate)
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")

let package = Package(
    name: "jumpgate-fuzz",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .target(name: "FuzzSupport", dependencies: [nioCore], swiftSettings: swiftSettings),
        fuzzTarget("FuzzSSMMessage", [wire, nioCore]),
        fuzzTarget("FuzzPayloadJSON", [wire, nioCore]),
        fuzzTarget("FuzzHandshake", [wire, nioCore]),
        fuzzTarget("FuzzSession", [wire, nioCore]),
        fuzzTarget("FuzzSmux", [wire, nioCore]),
        fuzzTarget("FuzzWebSocket", [wire, nioCore]),
        fuzzTarget(
            "FuzzHTTPSigV4",
            [
                wire, nioCore, .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        fuzzTarget("FuzzPolicy", [.product(name: "JumpgateAccess", package: jumpgate), wire]),
    ]
)
