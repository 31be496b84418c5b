import NIOConcurrencyHelpers
import NIOCore

/// Channels open now, each with work to finish when it closes (an event to print), so that something
/// that must come after all of them (a forward's `ended` event) can wait for exactly that.
public final class OpenChannels: Sendable {
    /// Each open channel's close work, done once it has run.
    private let closing = NIOLockedValueBox<[ObjectIdentifier: EventLoopFuture<Void>]>([:])

    public init() {}

    /// How many tracked channels have not finished closing.
    public var count: Int { self.closing.withLockedValue { $0.count } }

    /// Tracks `channel` until it has closed and `onClose` has run.
    public func track(_ channel: any Channel, onClose: @escaping @Sendable () -> Void) {
        let key = ObjectIdentifier(channel)
        let done = channel.closeFuture.always { _ in onClose() }.map { () }
        self.closing.withLockedValue { $0[key] = done }
        // Registered after the insert, so a channel closed already is removed too.
        done.whenComplete { _ in self.closing.withLockedValue { _ = $0.removeValue(forKey: key) } }
    }

    /// Succeeds once every channel tracked now has closed and run its close work, or after `limit`
    /// (for a channel stuck open), whichever is first.
    public func whenAllClosed(within limit: TimeAmount, on loop: any EventLoop) -> EventLoopFuture<Void> {
        let pending = self.closing.withLockedValue { Array($0.values) }
        guard !pending.isEmpty else { return loop.makeSucceededVoidFuture() }
        let done = loop.makePromise(of: Void.self)
        EventLoopFuture.andAllComplete(pending, on: loop).cascade(to: done)
        // Whichever completes the promise second is ignored by NIO.
        let timer = loop.scheduleTask(in: limit) { done.succeed() }
        done.futureResult.whenComplete { _ in timer.cancel() }
        return done.futureResult
    }

    /// `whenAllClosed(within:on:)` awaited. It waits for the events, not a poll, so a cancelled task
    /// waits too (it returns only when they are done or `limit` has passed).
    public func allClosed(within limit: TimeAmount, on loop: any EventLoop) async {
        try? await self.whenAllClosed(within: limit, on: loop).get()
    }
}
