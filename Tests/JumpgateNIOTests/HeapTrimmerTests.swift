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
