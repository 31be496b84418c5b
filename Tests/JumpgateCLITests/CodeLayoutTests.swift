import Foundation
import Testing

/// The executable's code is laid out by Linker/jumpgate.order (Package.swift passes it to lld; scripts/symbol-order
/// writes it from the functions a gateway, an agent and `jumpgate forward` really run). With those functions
/// together at the front, the three processes map about 7 MiB less of the binary's code between them while idle
/// (docs/PERFORMANCE.md, "2026-12-07, twenty-first session"): the kernel maps 64 KiB of code around every page a
/// process touches. And the executables export no symbols (the toolchain's static-stdlib link asks for all of
/// them), which keeps 5 MB of symbol tables, about 3.5 MiB of the three processes' idle PSS, out of memory.
@Suite(
    .disabled(
        if: ProcessInfo.processInfo.environment["JUMPGATE_SHARED_RUNTIME"] != nil,
        "a sanitizer build (scripts/sanitize) links without lld's ordering"
    )
)
struct CodeLayoutTests {
    static let orderFile = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Linker/jumpgate.order")

    /// The function names the order file lists, in its order (comments and blank lines left out).
    static func orderedNames() throws -> [Substring] {
        let text = try String(contentsOf: Self.orderFile, encoding: .utf8)
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
    }

    /// The first address of each function symbol of `binary` (local names can recur; the first is enough here).
    static func functionAddresses(_ binary: String) throws -> [Substring: UInt64] {
        var addresses: [Substring: UInt64] = [:]
        for line in try LinkedLibrariesTests.readelf(["--symbols", "--wide", binary]).split(separator: "\n") {
            // Num: Value Size Type Bind Vis Ndx Name
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8, fields[3] == "FUNC", let value = UInt64(fields[1], radix: 16), value != 0 else {
                continue
            }
            if addresses[fields[7]] == nil { addresses[fields[7]] = value }
        }
        return addresses
    }

    /// The start and size of the binary's .text section.
    static func textSection(_ binary: String) throws -> (start: UInt64, size: UInt64) {
        let sections = try LinkedLibrariesTests.readelf(["--section-headers", "--wide", binary])
        let line = try #require(sections.split(separator: "\n").first { $0.contains(" .text ") }, "no .text section")
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        let name = try #require(fields.firstIndex(of: ".text"))
        let start = try #require(UInt64(fields[name + 2], radix: 16))
        let size = try #require(UInt64(fields[name + 4], radix: 16))
        return (start, size)
    }

    @Test func theRunningCodeComesFirst() throws {
        let binary = BinaryRunner.productsDirectory.appendingPathComponent("jumpgate").path
        let names = try Self.orderedNames()
        try #require(names.count > 1000, "Linker/jumpgate.order lists \(names.count) functions")
        let addresses = try Self.functionAddresses(binary)
        let text = try Self.textSection(binary)
        #if !DEBUG
        let found = names.compactMap { addresses[$0] }
        // Renamed and removed functions drop out of the order as the code changes; past a fifth, the layout
        // has lost much of its point. (A debug build lacks the optimiser's specialisations, a fifth of the
        // names, and is not what runs.)
        #expect(
            found.count * 5 >= names.count * 4,
            "\(found.count) of the \(names.count) functions in Linker/jumpgate.order are left in the binary: run scripts/symbol-order, relink and commit the file"
        )
        #endif
        // The first thousand (functions all three processes run) come first. Unordered they spread over the
        // whole code (a quarter of them in its first quarter, half beyond its middle); ordered, nine in ten
        // lie in its first sixth, with the sections that hold them (a few are large: the Swift runtime's own
        // is 1.6 MB).
        let first = names.prefix(1000).compactMap { addresses[$0] }
        try #require(first.count >= 500, "only \(first.count) of the first 1,000 ordered functions are in the binary")
        let front = first.filter { $0 - text.start < text.size / 4 }.count
        #expect(
            front * 10 >= first.count * 9,
            "only \(front) of the first \(first.count) ordered functions are in the first quarter of the code: is Linker/jumpgate.order passed to lld (Package.swift)?"
        )
    }

    @Test(arguments: ["jumpgate", "session-manager-plugin"])
    func exportsNoSymbols(_ name: String) throws {
        let binary = BinaryRunner.productsDirectory.appendingPathComponent(name).path
        // Num: Value Size Type Bind Vis Ndx Name: a defined symbol has a section index, an imported one UND.
        let defined = try LinkedLibrariesTests.readelf(["--dyn-syms", "--wide", binary]).split(separator: "\n").filter {
            line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return fields.count >= 8 && fields[0].hasSuffix(":") && fields[6] != "UND" && fields[6] != "Ndx"
        }
        #expect(
            defined.count < 100,
            "\(name) exports \(defined.count) symbols: is `--no-export-dynamic` passed to the linker (Package.swift)?"
        )
    }
}
