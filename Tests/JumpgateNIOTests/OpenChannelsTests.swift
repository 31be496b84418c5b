import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// What a forward's `ended` event waits for: every open connection closed and its `closed` event out.
extension EventLoopFuture {
    /// Whether it has completed, read on an embedded loop (which runs callbacks at once).
    fileprivate var isFulfilledForTests: Bool {
        let done = NIOLockedValueBox(false)
        self.whenComplete { _ in done.withLockedValue { $0 = true } }
        return done.withLockedValue { $0 }
    }
}

@Suite("Open channels: waiting for every close")
struct OpenChannelsTests {
    @Test("the wait ends only after each channel closed and its close work ran")
    func waitsForEveryClose() async throws {
        let loop = EmbeddedEventLoop()
        let first = EmbeddedChannel(loop: loop)
        let second = EmbeddedChannel(loop: loop)
        let order = NIOLockedValueBox<[String]>([])
        let open = OpenChannels()
        open.track(first) { order.withLockedValue { $0.append("first closed") } }
        open.track(second) { order.withLockedValue { $0.append("second closed") } }
        #expect(open.count == 2)

        let waited = open.whenAllClosed(within: .seconds(2), on: loop)
        waited.whenComplete { _ in order.withLockedValue { $0.append("waited") } }
        loop.run()
        #expect(order.withLockedValue { $0 } == [])
        try await first.close()
        loop.run()
        #expect(order.withLockedValue { $0 } == ["first closed"])
        #expect(open.count == 1)
        try await second.close()
        loop.run()
        #expect(order.withLockedValue { $0 } == ["first closed", "second closed", "waited"])
        #expect(open.count == 0)

        #expect(open.whenAllClosed(within: .seconds(2), on: loop).isFulfilledForTests)
    }

    @Test("awaited in a cancelled task, the wait still lasts until the close (a Task.sleep poll would not)")
    func cancelledTaskStillWaits() async throws {
        let loop = NIOAsyncTestingEventLoop()  // its clock never moves here, so the limit never passes
        let channel = NIOAsyncTestingChannel(loop: loop)
        let closed = NIOLockedValueBox(false)
        let open = OpenChannels()
        try await loop.submit { open.track(channel) { closed.withLockedValue { $0 = true } } }.get()
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await open.allClosed(within: .seconds(2), on: loop)
            return closed.withLockedValue { $0 }
        }
        try await channel.close()
        #expect(await task.value, "the wait returned before the channel closed")
        await loop.shutdownGracefully()
    }

    @Test("a channel stuck open holds the wait no longer than the limit")
    func limitEndsTheWait() throws {
        let loop = EmbeddedEventLoop()
        let stuck = EmbeddedChannel(loop: loop)
        let open = OpenChannels()
        open.track(stuck) {}
        let done = NIOLockedValueBox(false)
        open.whenAllClosed(within: .seconds(2), on: loop).whenComplete { _ in done.withLockedValue { $0 = true } }
        loop.advanceTime(by: .milliseconds(1_999))
        #expect(!done.withLockedValue { $0 })
        loop.advanceTime(by: .milliseconds(1))
        #expect(done.withLockedValue { $0 })
        #expect(open.count == 1)
        _ = try stuck.finish()
    }

    @Test("a channel closed before it is tracked is not waited for")
    func closedBeforeTracking() async throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try await channel.close()
        let ran = NIOLockedValueBox(false)
        let open = OpenChannels()
        open.track(channel) { ran.withLockedValue { $0 = true } }
        loop.run()
        #expect(ran.withLockedValue { $0 })
        #expect(open.count == 0)
    }
}
