import Testing

@testable import JumpgateNIO

@Suite("Heap trimmer")
struct HeapTrimmerTests {
    @Test("freed heap pages in the middle of the heap go back to the system")
    func trimReleasesFreedPages() {
        #if canImport(Glibc)
        // 64 blocks of 64 KiB (below the mmap threshold, so on the heap), then one more that stays: the
        // freed ones are below it, where glibc's own top-of-heap trimming never reaches.
        let blocks = (0..<64).map { _ in UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16) }
        for block in blocks { block.initializeMemory(as: UInt8.self, repeating: 1, count: 64 * 1024) }
        let pinned = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        pinned.initializeMemory(as: UInt8.self, repeating: 2, count: 64 * 1024)
        for block in blocks { block.deallocate() }
        #expect(HeapTrimmer.trim(), "malloc_trim released nothing after 4 MiB was freed")
        pinned.deallocate()
        #endif
    }
}
