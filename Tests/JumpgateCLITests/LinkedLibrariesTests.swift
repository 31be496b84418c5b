import Foundation
import Testing

/// The `jumpgate` binary does not load Foundation (libFoundation, its internationalization library and
/// ICU with its data): about 9 MiB of the gateway's, the agent's and the client's idle memory together
/// (docs/PERFORMANCE.md). Its modules use FoundationEssentials; an `import Foundation` in any of them
/// brings the three back, and this fails.
@Suite struct LinkedLibrariesTests {
    @Test func jumpgateDoesNotLinkFoundation() throws {
        let binary = BinaryRunner.productsDirectory.appendingPathComponent("jumpgate").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["readelf", "--dynamic", binary]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "readelf --dynamic \(binary) failed")
        let needed = text.split(separator: "\n").filter { $0.contains("(NEEDED)") }.map(String.init)
        #expect(needed.contains { $0.contains("libFoundationEssentials.so") }, "\(needed)")
        for library in ["libFoundation.so", "libFoundationInternationalization.so", "lib_FoundationICU.so"] {
            #expect(!needed.contains { $0.contains("[\(library)]") }, "\(library) is linked: \(needed)")
        }
    }
}
