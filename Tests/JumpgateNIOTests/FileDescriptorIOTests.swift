import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import JumpgateNIO

/// Whole writes and reads on descriptors: what the standard streams, the terminal and child programs' pipes
/// go through.
@Suite struct FileDescriptorIOTests {
    @Test func writeAllWaitsOnAFullNonBlockingPipeAndReadToEndGetsEverything() throws {
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        // Non-blocking, and 1 MiB against a pipe of 64 KiB: the write must wait (poll) for the reader.
        _ = fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK)
        let seed: UInt64 = 20_261_205
        print("FileDescriptorIOTests seed \(seed)")
        var state = seed
        let bytes = (0..<(1 << 20)).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let received = NIOLockedValueBox<[UInt8]?>(nil)
        let done = DispatchSemaphore(value: 0)
        let reader = ends[0]
        DetachedThread.start {
            let all = FileDescriptorIO.readToEnd(reader)
            received.withLockedValue { $0 = all }
            done.signal()
        }
        #expect(FileDescriptorIO.writeAll(bytes[...], to: ends[1]))
        close(ends[1])
        #expect(done.wait(timeout: .now() + 30) == .success)
        close(ends[0])
        #expect(received.withLockedValue { $0 } == bytes)
    }

    @Test func writeAllReportsAReaderThatWentAway() throws {
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        close(ends[0])
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous) }
        #expect(!FileDescriptorIO.writeAll("lost".utf8, to: ends[1]))
        #expect(errno == EPIPE)
        close(ends[1])
    }
}
