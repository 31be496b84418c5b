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
        "a check trims when 16 MiB more lie free than after the last trim, backs off while that lasts, and trims every 15th check anyway"
    )
    func policy() {
        let mib = 1 << 20
        var policy = HeapTrimmer.Policy()
        // Each trim leaves `left` MiB free in the allocator's lists (its pages given back).
        func run(_ free: [Int], left: Int = 0) -> [Bool] {
            free.map { free in
                let trim = policy.check(freeBytes: free * mib)
                if trim { policy.trimmed(freeBytes: left * mib) }
                return trim
            }
        }
        // A burst ends: 40 MiB lie free, the first check trims, the next finds the heap quiet.
        #expect(run([2, 40, 1, 3]) == [false, true, false, false])
        // A long transfer keeps 20 MiB free at every check: trims back off (1, 2, 4 checks skipped)...
        #expect(
            run(Array(repeating: 20, count: 12))
                == [true, false, true, false, false, true, false, false, false, false, true, false]
        )
        // ...and a quiet check resets the back-off: the next burst is trimmed at once.
        #expect(run([1, 30, 1]) == [false, true, false])
        // A fragmented heap: 24 MiB stay free after each trim (the pages went back, the chunks stay listed).
        // That is not new memory: no trim until 16 MiB more are freed, and then at once.
        policy = HeapTrimmer.Policy()
        #expect(run([40, 24, 30, 24, 41, 24], left: 24) == [true, false, false, false, true, false])
        // Nothing is ever free: the 15th check since the start (or the last trim) trims anyway.
        policy = HeapTrimmer.Policy()
        #expect(run(Array(repeating: 0, count: 15)) == Array(repeating: false, count: 14) + [true])
    }

    @Test(
        "the first check that finds the process quiet after it worked trims 16 MiB or more lying free, once, whatever the last trim left"
    )
    func quietAfterWork() {
        let mib = 1 << 20
        var policy = HeapTrimmer.Policy()
        func run(_ checks: [(free: Int, quiet: Bool)], left: Int = 0) -> [Bool] {
            checks.map { check in
                let trim = policy.check(freeBytes: check.free * mib, quiet: check.quiet)
                if trim { policy.trimmed(freeBytes: left * mib) }
                return trim
            }
        }
        // A busy transfer keeps 20 MiB free: trims back off (1 check skipped, then 2 to come)...
        #expect(run(Array(repeating: (20, false), count: 3)) == [true, false, true])
        // ...it ends, 35 MiB lie free, the process goes quiet: trimmed at the first quiet check, which the
        // back-off would have skipped.
        #expect(run([(35, true)]) == [true])
        // The quiet trim reset the back-off: the next busy burst is trimmed at once, then skips one check
        // (not four).
        #expect(run([(30, false), (30, false), (30, false)]) == [true, false, true])
        // Trims leave 24 MiB listed free (their pages went back; a transfer faults them in again). The
        // baseline sees no new 16 MiB, so only going quiet gives them back: once per quiet spell.
        policy = HeapTrimmer.Policy()
        #expect(
            run([(40, false), (30, false), (30, true), (30, true), (30, false), (30, true)], left: 24)
                == [true, false, true, false, false, true]
        )
        // Quiet with less than 16 MiB free: nothing to give back.
        policy = HeapTrimmer.Policy()
        #expect(run([(2, false), (10, true), (15, true)]) == [false, false, false])
        // A periodic trim (the 15th check) that lands on the first quiet check counts as that check's trim:
        // no second one at the next quiet check. One that lands on a busy check after a quiet spell leaves the
        // next quiet check the first. (Each trim leaves the 20 MiB listed free: only going quiet trims again.)
        policy = HeapTrimmer.Policy()
        let quietAtPeriodic = run(Array(repeating: (0, false), count: 14) + [(20, true), (20, true)], left: 20)
        #expect(quietAtPeriodic.suffix(2) == [true, false])
        policy = HeapTrimmer.Policy()
        let busyAtPeriodic = run(Array(repeating: (0, true), count: 14) + [(0, false), (20, true)], left: 20)
        #expect(busyAtPeriodic.suffix(2) == [true, true])
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
        let freeBefore = HeapTrimmer.freeBytes()
        #expect(freeBefore >= 32 << 20, "the allocator reports \(freeBefore >> 20) MiB free of the 32 MiB freed")
        let before = try Self.residentBytes()
        HeapTrimmer.trim()
        let after = try Self.residentBytes()
        // The trim gives pages back but leaves the chunks free: the figure the policy's baseline starts from.
        #expect(HeapTrimmer.freeBytes() >= 16 << 20)
        #expect(before - after >= 16 << 20, "a trim gave back \((before - after) >> 20) MiB of the 32 MiB freed")
        #endif
    }
}
