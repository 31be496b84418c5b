import CJumpgateHeap
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Gives memory freed after a burst back to the system. glibc keeps freed heap pages mapped (only the top
/// of the heap is trimmed on its own), so after a bulk transfer a process kept well over 100 MiB resident
/// while idle (docs/PERFORMANCE.md); `malloc_trim(0)` releases every free page. A trim costs a few
/// milliseconds for a large heap and takes the allocator's locks, so it runs when the allocator holds
/// ``Policy/freeThreshold`` more free than after the last trim (checked every 2 s: a burst's memory goes
/// back within seconds), backing off while a transfer keeps freeing and reusing that much; once at the first
/// check that finds the process quiet after it worked (under ``Policy/quietShare`` of a core since the last
/// check) with that much free, whatever the last trim left; and every 30 s regardless. Elsewhere than glibc
/// it does nothing.
public enum HeapTrimmer {
    /// When to trim, as a pure decision over what the allocator holds free at each check.
    public struct Policy: Sendable, Equatable {
        /// Free heap, beyond what was free after the last trim, that makes a check trim.
        public static let freeThreshold = 16 << 20
        /// Checks between trims made whatever the heap holds (every 30 s with 2 s checks); also the longest
        /// back-off.
        public static let checksPerPeriodicTrim = 15
        /// A process that used less than this share of a core since the last check is quiet: what it holds
        /// free is not about to be reused, so the first quiet check after it worked ends a back-off and gives
        /// the free memory back.
        public static let quietShare = 0.05

        /// What was free right after the last trim (or the least seen since): a trim gives free pages
        /// back but leaves them free in the allocator's lists, so only what was freed since counts.
        public private(set) var baseline = 0
        public private(set) var checksSinceTrim = 0
        /// Checks still skipped after a trim made on the threshold, and the next back-off: a busy transfer
        /// frees and reuses more than the threshold all the time, and trimming at each check would only hand
        /// pages back for it to fault in again.
        public private(set) var skip = 0
        public private(set) var backoff = 1
        /// A check has found the process quiet since it last worked (see ``quietShare``).
        public private(set) var quietSinceWork = false

        public init() {}

        /// A check found `freeBytes` free in the allocator, the process `quiet` since the last check (see
        /// ``quietShare``): whether to trim now.
        public mutating func check(freeBytes: Int, quiet: Bool = false) -> Bool {
            self.checksSinceTrim += 1
            self.baseline = min(self.baseline, freeBytes)
            let firstQuiet = quiet && !self.quietSinceWork
            self.quietSinceWork = quiet
            if self.checksSinceTrim >= Self.checksPerPeriodicTrim {
                self.skip = 0
                return true
            }
            if firstQuiet, freeBytes >= Self.freeThreshold {
                // The first quiet check since the process worked gives back whatever lies free, once: the
                // baseline cannot tell chunks whose pages went back at a trim from the same chunks faulted in
                // again by the transfer since. It ends a back-off too.
                self.skip = 0
                self.backoff = 1
                return true
            }
            guard freeBytes - self.baseline >= Self.freeThreshold else {
                // Nothing new freed: the next time that much is, trim at once.
                self.skip = 0
                self.backoff = 1
                return false
            }
            guard self.skip == 0 else {
                self.skip -= 1
                return false
            }
            self.skip = self.backoff
            self.backoff = min(self.backoff * 2, Self.checksPerPeriodicTrim)
            return true
        }

        /// A trim ran; `freeBytes` is what the allocator holds free after it.
        public mutating func trimmed(freeBytes: Int) {
            self.baseline = freeBytes
            self.checksSinceTrim = 0
        }
    }

    /// Checks every `interval` for the life of the process. The timer lives on `eventLoop`; the check and
    /// the trim run on the thread pool, so a loop relaying data does not stop for them (it may still wait
    /// on the allocator's lock for the few milliseconds a trim takes).
    @discardableResult
    public static func start(on eventLoop: any EventLoop, every interval: TimeAmount = .seconds(2)) -> RepeatedTask {
        // Only the thread pool's jobs touch the policy, one every interval; the lock keeps that safe if
        // one ran late enough to overlap the next.
        // The CPU time is compared with the time that really passed since the last check, not `interval`:
        // the thread pool also runs blocking work (name look-ups), and jobs that waited behind it run back to
        // back, seeing almost no CPU between them.
        let state = NIOLockedValueBox(
            (policy: Policy(), cpuSeconds: Self.processCPUSeconds(), checkedAt: NIODeadline.now())
        )
        return eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            NIOThreadPool.singleton.submit { _ in
                state.withLockedValue { state in
                    let (cpuSeconds, now) = (Self.processCPUSeconds(), NIODeadline.now())
                    let elapsed = Double((now - state.checkedAt).nanoseconds) / 1e9
                    let quiet = cpuSeconds - state.cpuSeconds < Policy.quietShare * elapsed
                    (state.cpuSeconds, state.checkedAt) = (cpuSeconds, now)
                    guard state.policy.check(freeBytes: Self.freeBytes(), quiet: quiet) else { return }
                    Self.trim()
                    state.policy.trimmed(freeBytes: Self.freeBytes())
                    // The trim's own CPU is not the process's traffic.
                    (state.cpuSeconds, state.checkedAt) = (Self.processCPUSeconds(), NIODeadline.now())
                }
            }
        }
    }

    /// CPU time this process has used, all threads (0 where it cannot be read).
    static func processCPUSeconds() -> Double {
        var time = timespec()
        guard clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time) == 0 else { return 0 }
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// What the allocator holds free (0 where it cannot be known).
    public static func freeBytes() -> Int {
        Int(jumpgate_heap_free_bytes())
    }

    /// Releases free heap pages now; returns whether any memory went back to the system.
    @discardableResult
    public static func trim() -> Bool {
        jumpgate_heap_trim() != 0
    }
}
