#if canImport(Glibc)
import Glibc
#endif

/// One process per directory: an exclusive lock (flock) on a file that holds the holder's PID. The kernel
/// releases it when the process ends, however it ends. Used by the gateway's data directory and the
/// agent's state directory.
public enum PIDFileLock {
    public enum Outcome: Sendable, Equatable {
        /// Locked; the file now holds this process's PID. Keep the descriptor open while the lock is needed.
        case locked(descriptor: Int32)
        /// Another process holds it (its PID, when it wrote one).
        case heldBy(pid: Int32?)
        /// The file cannot be opened (errno).
        case cannotOpen(errno: Int32)
    }

    public static func acquire(_ path: String) -> Outcome {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return .cannotOpen(errno: errno) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            var bytes = [UInt8](repeating: 0, count: 32)
            let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 31, 0) }
            // Never unlink here: the holder has this very file open and locked.
            close(descriptor)
            let text = count > 0 ? String(decoding: bytes[0..<count], as: UTF8.self) : ""
            return .heldBy(pid: Int32(text.filter { !$0.isWhitespace }))
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(descriptor, 0)
        _ = pid.withCString { pwrite(descriptor, $0, strlen($0), 0) }
        return .locked(descriptor: descriptor)
    }

    /// The PID of the process holding the lock, or nil when nobody does (the file is absent, or unlocked).
    public static func holder(_ path: String) -> Int32? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        if flock(descriptor, LOCK_SH | LOCK_NB) == 0 {
            flock(descriptor, LOCK_UN)
            return nil
        }
        var bytes = [UInt8](repeating: 0, count: 32)
        let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 31, 0) }
        return count > 0 ? Int32(String(decoding: bytes[0..<count], as: UTF8.self).filter { !$0.isWhitespace }) : nil
    }
}
