import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Gives memory freed after a burst back to the system. glibc keeps freed heap pages mapped (only the top
/// of the heap is trimmed on its own), so after a bulk transfer a process kept well over 100 MiB resident
/// while idle (docs/PERFORMANCE.md); `malloc_trim(0)` releases every free page. It runs on a timer and
/// costs a few milliseconds for a large heap. Elsewhere than glibc it does nothing.
public enum HeapTrimmer {
    /// Starts trimming every `interval` for the life of the process. The timer lives on `eventLoop`; the
    /// trim itself runs on the thread pool, so a loop relaying data does not stop for it (it may still wait
    /// on the allocator's lock for the few milliseconds a trim takes).
    @discardableResult
    public static func start(on eventLoop: any EventLoop, every interval: TimeAmount = .seconds(30)) -> RepeatedTask {
        eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            NIOThreadPool.singleton.submit { _ in Self.trim() }
        }
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
