import Foundation
import Testing

/// What the executables need at run time, read from their ELF headers.
///
/// They carry the Swift runtime and the parts of Foundation they use (Package.swift links them with
/// `-static-stdlib`), so a jump server or a laptop without a Swift toolchain runs them: the dynamic loader is
/// asked for glibc, libm, libgcc_s and libstdc++ only. And the Foundation code they carry is
/// FoundationEssentials': a module that uses Foundation itself (an `import Foundation` that reaches past
/// what FoundationEssentials re-exports) would bring in Foundation, its internationalization library and
/// ICU with its data (about 9 MiB of the three processes' idle memory when they were loaded as shared
/// libraries, and more of the binary now; docs/PERFORMANCE.md).
@Suite(
    .disabled(
        if: ProcessInfo.processInfo.environment["JUMPGATE_SHARED_RUNTIME"] != nil,
        "a sanitizer build (scripts/sanitize) keeps the shared runtime"
    )
)
struct LinkedLibrariesTests {
    /// The libraries every Linux C++ program may need: nothing from the Swift toolchain.
    static let systemLibraries: Set<String> = [
        "libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
        "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
    ]

    static func readelf(_ arguments: [String]) throws -> String {
        let result = try BinaryRunner.run(executable: URL(fileURLWithPath: "/usr/bin/env"), ["readelf"] + arguments)
        try #require(result.status == 0, "readelf \(arguments.joined(separator: " ")) failed: \(result.stderr)")
        return result.stdoutText
    }

    /// The `(NEEDED)` entries of a binary's dynamic section, by name.
    static func needed(_ binary: String) throws -> [String] {
        try Self.readelf(["--dynamic", binary]).split(separator: "\n").filter { $0.contains("(NEEDED)") }.compactMap {
            line in
            guard let open = line.firstIndex(of: "["), let close = line.lastIndex(of: "]") else { return nil }
            return String(line[line.index(after: open)..<close])
        }
    }

    @Test(arguments: ["jumpgate", "session-manager-plugin"])
    func needsNoSwiftToolchain(_ name: String) throws {
        let binary = BinaryRunner.productsDirectory.appendingPathComponent(name).path
        let needed = try Self.needed(binary)
        #expect(needed.contains("libc.so.6"), "\(needed)")
        let foreign = needed.filter { !Self.systemLibraries.contains($0) }
        #expect(foreign.isEmpty, "\(name) needs \(foreign) at run time: link it with -static-stdlib (Package.swift)")
    }

    /// Whether this process may make a mount namespace: root, and not in a container that took the right away.
    static let mountNamespaces: Bool =
        getuid() == 0
        && (try? BinaryRunner.run(executable: URL(fileURLWithPath: "/usr/bin/unshare"), ["--mount", "true"]))?
            .status == 0

    /// The directory the test bundle's own Swift runtime came from (it is linked to the shared one).
    static func runtimeDirectory() throws -> String {
        // Read to the end: /proc files have no size for a read by length.
        let handle = try #require(FileHandle(forReadingAtPath: "/proc/self/maps"))
        let maps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        let path = try #require(
            maps.split(separator: "\n").compactMap { $0.split(separator: " ").last }.first {
                $0.hasSuffix("/libswiftCore.so")
            },
            "the test bundle maps no libswiftCore.so"
        )
        return String(path.dropLast("/libswiftCore.so".count))
    }

    /// Run for real with the toolchain's runtime out of sight: in a mount namespace of their own, an empty
    /// file system is mounted over the directory the shared Swift runtime lives in (checked empty first).
    @Test(
        .enabled(if: Self.mountNamespaces, "needs a mount namespace (root with CAP_SYS_ADMIN)"),
        arguments: ["jumpgate", "session-manager-plugin"]
    )
    func runsWithTheToolchainHidden(_ name: String) throws {
        let binary = BinaryRunner.productsDirectory.appendingPathComponent(name).path
        let runtime = try Self.runtimeDirectory()
        let result = try BinaryRunner.run(
            executable: URL(fileURLWithPath: "/usr/bin/unshare"),
            [
                "--mount", "sh", "-c",
                #"mount -t tmpfs none "$1" && test ! -e "$1/libswiftCore.so" && exec "$2" --version"#,
                "sh", runtime, binary,
            ]
        )
        #expect(result.status == 0, "\(name) with \(runtime) hidden: \(result.stderr)")
        #expect(!result.stdout.isEmpty, "\(name) --version printed nothing")
    }

    @Test(arguments: ["jumpgate", "session-manager-plugin"])
    func carriesFoundationEssentialsOnly(_ name: String) throws {
        let binary = BinaryRunner.productsDirectory.appendingPathComponent(name).path
        let symbols = try Self.readelf(["--symbols", "--wide", binary])
        // Mangled Swift names carry their module: `$s20FoundationEssentials...` is in, `$s10Foundation...`
        // (Foundation's own code) and `$s30FoundationInternationalization...` must not be.
        #expect(symbols.contains("$s20FoundationEssentials"), "no FoundationEssentials symbol: is the table stripped?")
        #expect(
            !symbols.contains("$s10Foundation"),
            "\(name) carries Foundation's own code: a module uses Foundation beyond FoundationEssentials"
        )
        #expect(
            !symbols.contains("$s30FoundationInternationalization"),
            "\(name) carries FoundationInternationalization"
        )
    }
}
