import Foundation
import Testing

@testable import JumpgateNIO

@Suite("Heap trimmer")
struct HeapTrimmerTests {
    /// Resident bytes of this process, from /proc/self/statm (its second field, in pages).
    static func residentBytes() throws -> Int {
        let fields = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8).split(separator: " ")
        let pages = try #require(fields.count >= 2 ? Int(fields[1]) : nil, "unexpected /proc/self/statm")
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test("a check trims after 16 MiB of growth since the last trim, and every 15th check regardless")
    func policy() {
        let mib = 1 << 20
        var policy = HeapTrimmer.Policy(resident: 40 * mib)
        var decisions: [Bool] = []
        for resident in [50, 56] { decisions.append(policy.check(resident: resident * mib)) }
        #expect(decisions == [false, true], "16 MiB above the resident size at start")
        // Growth counts from the size after the trim.
        policy.trimmed(resident: 45 * mib)
        decisions = [60, 61].map { policy.check(resident: $0 * mib) }
        #expect(decisions == [false, true])
        // A trim that gave nothing back (the memory is in use) does not make every later check trim.
        policy.trimmed(resident: 61 * mib)
        // Memory that went back by itself lowers the baseline: growth from there counts.
        decisions = [61, 30, 46].map { policy.check(resident: $0 * mib) }
        #expect(decisions == [false, false, true])
        // Nothing grows: the 15th check since the last trim trims anyway.
        policy.trimmed(resident: 30 * mib)
        decisions = (1...15).map { _ in policy.check(resident: 30 * mib) }
        #expect(decisions == Array(repeating: false, count: 14) + [true])
    }

    @Test(
        "freed heap pages below a live block are returned to the system by a trim",
        .enabled(
            if: ProcessInfo.processInfo.environment["JUMPGATE_SANITIZER"] == nil,
            "a sanitizer's allocator replaces glibc malloc, which malloc_trim works on"
        )
    )
    func trimReleasesFreedPages() throws {
        #if canImport(Glibc)
        // 512 blocks of 64 KiB (32 MiB, below the mmap threshold, so on the heap), then one that stays: the
        // freed ones lie below it, where glibc's own top-of-heap trimming never reaches.
        let blocks = (0..<512).map { _ in UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16) }
        for block in blocks { block.initializeMemory(as: UInt8.self, repeating: 1, count: 64 * 1024) }
        let pinned = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        pinned.initializeMemory(as: UInt8.self, repeating: 2, count: 64 * 1024)
        defer { pinned.deallocate() }
        for block in blocks { block.deallocate() }
        let before = try Self.residentBytes()
        HeapTrimmer.trim()
        let after = try Self.residentBytes()
        #expect(before - after >= 16 << 20, "a trim gave back \((before - after) >> 20) MiB of the 32 MiB freed")
        #endif
    }
}
