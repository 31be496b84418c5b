import NIOCore
import Testing

@testable import JumpgateGateway

/// When `/healthz` and `/metrics` probe the store with a real write: pure, with the time passed in.
@Suite("Store write health: when a probe is due")
struct StoreWriteHealthTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    static func due(_ health: inout StoreWriteHealth, now: NIODeadline) -> Bool { health.probeIsDue(now: now) }

    @Test("never checked: a probe is due at once, and only one while it runs")
    func firstProbe() {
        var health = StoreWriteHealth()
        #expect(Self.due(&health, now: Self.start))
        #expect(!Self.due(&health, now: Self.start + .milliseconds(10)), "a second probe started beside the first")
    }

    @Test("while writes succeed, the next probe is 30 s after the last write or probe")
    func healthyInterval() {
        var health = StoreWriteHealth()
        health.record(nil, now: Self.start)
        #expect(!Self.due(&health, now: Self.start + .seconds(29)))
        #expect(Self.due(&health, now: Self.start + .seconds(30)))
        // A real change that succeeds counts as a check: the interval starts again from it.
        health.record(nil, now: Self.start + .seconds(40))
        #expect(!Self.due(&health, now: Self.start + .seconds(69)))
        #expect(Self.due(&health, now: Self.start + .seconds(70)))
    }

    @Test("while writes fail, a probe every second; the first success clears the problem")
    func failingInterval() {
        var health = StoreWriteHealth()
        health.record("disk I/O error", now: Self.start)
        #expect(health.problem == "disk I/O error")
        #expect(!Self.due(&health, now: Self.start + .milliseconds(999)))
        #expect(Self.due(&health, now: Self.start + .seconds(1)))
        health.record("database or disk is full", now: Self.start + .seconds(1))
        #expect(health.problem == "database or disk is full")
        #expect(Self.due(&health, now: Self.start + .seconds(2)))
        health.record(nil, now: Self.start + .seconds(2))
        #expect(health.problem == nil)
        #expect(!Self.due(&health, now: Self.start + .seconds(3)), "back to the healthy interval")
    }
}
