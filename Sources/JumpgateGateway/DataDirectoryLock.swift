import FoundationEssentials
import Glibc
import JumpgateNIO

#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on a gateway's data directory, held for the life of the process: two gateways on one
/// directory would both write one SQLite store and one set of TLS files. Taken before anything else is
/// written (the lock file is the first thing a fresh directory gets); the holder's PID is written into the
/// lock file, so a second gateway can name it. The kernel releases the lock when the process ends, however
/// it ends, so a stale lock file never blocks a restart.
final class DataDirectoryLock: Sendable {
    let path: String
    private let descriptor: Int32
    /// What this gateway created (a fresh directory, or the lock file): removed again if it fails to start.
    private let createdDirectory: String?
    private let createdFile: Bool

    static let fileName = "gateway.lock"

    private init(path: String, descriptor: Int32, createdDirectory: String?, createdFile: Bool) {
        self.path = path
        self.descriptor = descriptor
        self.createdDirectory = createdDirectory
        self.createdFile = createdFile
    }

    /// Takes the lock on `directory` (creating it, mode 0700, if needed), or throws naming the holder.
    static func acquire(directory: String) throws -> DataDirectoryLock {
        let fm = FileManager.default
        let isDirectory = FilePathText.isDirectory(directory)
        let existed = isDirectory != nil
        // The outermost directory this start creates (parents included): removed again if it fails.
        var created: String? = nil
        // Only for a path the working directory resolves: otherwise nothing is removed on a failed start.
        if !existed, var candidate = FilePathText.absolute(directory) {
            while !fm.fileExists(atPath: FilePathText.parent(of: candidate)),
                FilePathText.parent(of: candidate) != candidate
            {
                candidate = FilePathText.parent(of: candidate)
            }
            created = candidate
        }
        if isDirectory == false {
            throw GatewayStartError("the data directory \(directory) is a file; give a directory with --data-dir")
        }
        if !existed {
            do {
                try fm.createDirectory(
                    atPath: directory,
                    withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o700]
                )
            } catch {
                throw GatewayStartError(
                    "cannot create the data directory \(directory); "
                        + "check its parent's permissions or give another --data-dir"
                )
            }
        }
        let path = directory + "/" + Self.fileName
        let fileExisted = fm.fileExists(atPath: path)
        let descriptor: Int32
        switch PIDFileLock.acquire(path) {
        case .locked(let locked):
            descriptor = locked
        case .cannotOpen(let error):
            if let created { try? fm.removeItem(atPath: created) }
            throw GatewayStartError(
                "cannot open \(path): \(Self.reason(error).lowercased()); the data directory must be writable by this "
                    + "user, or give another --data-dir"
            )
        case .heldBy(let holder):
            throw GatewayStartError(
                "another jumpgate server\(holder.map { " (PID \($0))" } ?? "") is using the data directory "
                    + "\(directory); stop it first, or give this one another --data-dir"
            )
        }
        return DataDirectoryLock(
            path: path,
            descriptor: descriptor,
            createdDirectory: created,
            createdFile: !fileExisted
        )
    }

    static func reason(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    /// The gateway failed to start: leave the disk as it was (a fresh directory is removed again).
    func abandon() {
        if let directory = self.createdDirectory {
            try? FileManager.default.removeItem(atPath: directory)
        } else if self.createdFile {
            unlink(self.path)
        } else {
            _ = ftruncate(self.descriptor, 0)
        }
        self.release()
    }

    func release() {
        close(self.descriptor)
    }
}
