import Foundation
import Testing

/// What the executables need at run time, read from their ELF headers.
///
/// They carry the Swift runtime and the parts of Foundation they use (Package.swift links them with
/// `-static-stdlib`), so a jump server or a laptop without a Swift toolchain runs them: the dynamic loader is
/// asked for glibc, libm, libgcc_s and libstdc++ only. And the Foundation they carry is FoundationEssentials:
/// an `import Foundation` in any of their modules would bring in Foundation itself, its internationalization
/// library and ICU with its data (about 9 MiB of the three processes' idle memory when they were loaded as
/// shared libraries, and more of the binary now; docs/PERFORMANCE.md).
@Suite struct LinkedLibrariesTests {
    /// The libraries every Linux C++ program may need: nothing from the Swift toolchain.
    static let systemLibraries: Set<String> = [
        "libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
        "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
    ]

    static func readelf(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["readelf"] + arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "readelf \(arguments.joined(separator: " ")) failed")
        return text
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

    @Test(arguments: ["jumpgate", "session-manager-plugin"])
    func carriesFoundationEssentialsOnly(_ name: String) throws {
        let binary = BinaryRunner.productsDirectory.appendingPathComponent(name).path
        let symbols = try Self.readelf(["--symbols", "--wide", binary])
        // Mangled Swift names carry their module: `$s20FoundationEssentials...` is in, `$s10Foundation...`
        // (Foundation's own code) and `$s30FoundationInternationalization...` must not be.
        #expect(symbols.contains("$s20FoundationEssentials"), "no FoundationEssentials symbol: is the table stripped?")
        #expect(!symbols.contains("$s10Foundation"), "\(name) carries Foundation: an `import Foundation` crept in")
        #expect(
            !symbols.contains("$s30FoundationInternationalization"),
            "\(name) carries FoundationInternationalization"
        )
    }
}
