import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Gives memory freed after a burst back to the system. glibc keeps freed heap pages mapped (only the top
/// of the heap is trimmed on its own), so after a bulk transfer a process kept well over 100 MiB resident
/// while idle (docs/PERFORMANCE.md); `malloc_trim(0)` releases every free page. A trim costs a few
/// milliseconds for a large heap, so it runs when the resident size has grown by
/// ``Policy/growthThreshold`` since the last trim (checked every 2 s: a tunnel's memory goes back within
/// seconds of a burst) and otherwise every 30 s. Elsewhere than glibc it does nothing.
public enum HeapTrimmer {
    /// When to trim, as a pure decision over resident sizes.
    public struct Policy: Sendable, Equatable {
        /// Growth of the resident size since the last trim that makes the next check trim.
        public static let growthThreshold = 16 << 20
        /// Checks between trims made whatever the resident size (every 30 s with 2 s checks).
        public static let checksPerPeriodicTrim = 15

        /// The resident size after the last trim, or the lowest seen since: growth is counted from it.
        public private(set) var baseline: Int
        public private(set) var checksSinceTrim = 0

        public init(resident: Int) {
            self.baseline = resident
        }

        /// A check saw `resident` bytes: whether to trim now.
        public mutating func check(resident: Int) -> Bool {
            self.checksSinceTrim += 1
            self.baseline = min(self.baseline, resident)
            return resident - self.baseline >= Self.growthThreshold
                || self.checksSinceTrim >= Self.checksPerPeriodicTrim
        }

        /// A trim ran; `resident` is the size after it.
        public mutating func trimmed(resident: Int) {
            self.baseline = resident
            self.checksSinceTrim = 0
        }
    }

    /// Checks every `interval` for the life of the process. The timer lives on `eventLoop`; the check
    /// (a read of /proc/self/statm) and the trim run on the thread pool, so a loop relaying data does not
    /// stop for them (it may still wait on the allocator's lock for the few milliseconds a trim takes).
    @discardableResult
    public static func start(on eventLoop: any EventLoop, every interval: TimeAmount = .seconds(2)) -> RepeatedTask {
        // The policy is touched only by the thread pool's jobs, one every interval; the lock makes that
        // safe even if one job ran late enough to overlap the next.
        let policy = NIOLockedValueBox(Policy(resident: Self.residentBytes() ?? 0))
        return eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            NIOThreadPool.singleton.submit { _ in
                guard let resident = Self.residentBytes() else { return }
                policy.withLockedValue { policy in
                    guard policy.check(resident: resident) else { return }
                    Self.trim()
                    policy.trimmed(resident: Self.residentBytes() ?? resident)
                }
            }
        }
    }

    /// This process's resident size (a read of /proc/self/statm; no descriptor listing).
    static func residentBytes() -> Int? {
        #if os(Linux)
        return ProcessStatistics.residentBytes("/proc/self")
        #else
        return nil
        #endif
    }

    /// Releases free heap pages now; returns whether any memory went back to the system.
    @discardableResult
    public static func trim() -> Bool {
        #if canImport(Glibc)
        // malloc.h is not part of the Glibc module: look the function up (glibc has had it since 2.0).
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "malloc_trim") else { return false }
        let mallocTrim = unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        return mallocTrim(0) != 0
        #else
        return false
        #endif
    }
}
