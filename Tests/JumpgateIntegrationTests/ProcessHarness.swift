import Foundation
import NIOConcurrencyHelpers

/// A child process of the test: started from the build's products directory, its output captured
/// line by line, stopped by its PID (SIGTERM, then SIGKILL) when the test ends.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let name: String
    private let lines = NIOLockedValueBox<(complete: [String], partial: [UInt8])>(([], []))
    private let errorText = NIOLockedValueBox<String>("")

    static var productsDirectory: URL {
        if let override = ProcessInfo.processInfo.environment["JUMPGATE_BIN_DIR"] {
            return URL(fileURLWithPath: override)
        }
        var directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while directory.path != "/",
            !FileManager.default.fileExists(atPath: directory.appendingPathComponent("jumpgate").path)
        {
            directory = directory.deletingLastPathComponent()
        }
        return directory
    }

    /// Runs `jumpgate` from the build, or `executable` looked up on PATH.
    init(_ name: String, _ arguments: [String], executable: String? = nil, environment: [String: String] = [:]) throws {
        self.name = name
        if let executable {
            self.process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            self.process.arguments = [executable] + arguments
        } else {
            self.process.executableURL = Self.productsDirectory.appendingPathComponent("jumpgate")
            self.process.arguments = arguments
        }
        self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let out = Pipe()
        let err = Pipe()
        self.process.standardOutput = out
        self.process.standardError = err
        self.process.standardInput = FileHandle.nullDevice
        let lines = self.lines
        let pipesEnded = self.pipesEnded
        out.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                pipesEnded.signal()
                return
            }
            // Split on the newline byte: as Characters, a terminal's "\r\n" is one that is not "\n".
            lines.withLockedValue { state in
                var pieces = (state.partial + Array(data)).split(separator: 0x0A, omittingEmptySubsequences: false)
                state.partial = Array(pieces.removeLast())
                state.complete.append(contentsOf: pieces.map { String(decoding: $0, as: UTF8.self) })
            }
        }
        let errorText = self.errorText
        err.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                pipesEnded.signal()
                return
            }
            errorText.withLockedValue { $0 += String(decoding: data, as: UTF8.self) }
        }
        try self.process.run()
    }

    /// Signalled once per pipe (stdout, stderr) when its end of file is read.
    let pipesEnded = DispatchSemaphore(value: 0)
    /// How many of those signals `waitForOutputEnd` has taken.
    let endedPipesSeen = NIOLockedValueBox(0)

    /// Waits (bounded) until stdout and stderr are read to their end: then `output` and `standardError` are
    /// complete. False after `timeout`: a process spawned meanwhile by this test process (Foundation's
    /// pipes are not close-on-exec) can hold a write end; what the exited child wrote has been read by
    /// then all the same.
    @discardableResult
    func waitForOutputEnd(timeout: Double = 5) -> Bool {
        let deadline = DispatchTime.now() + timeout
        while self.endedPipesSeen.withLockedValue({ $0 }) < 2 {
            guard self.pipesEnded.wait(timeout: deadline) == .success else { return false }
            self.endedPipesSeen.withLockedValue { $0 += 1 }
        }
        return true
    }

    /// A copy of its own (not the locked array's buffer, which the reader thread keeps appending to: with
    /// the Swift runtime's reference counts invisible to ThreadSanitizer, sharing it was reported as a race).
    var output: [String] { self.lines.withLockedValue { $0.complete.map { $0 } } }
    /// Everything printed on stdout so far, including a last line without its newline.
    var outputText: String {
        self.lines.withLockedValue { state in
            (state.complete + [String(decoding: state.partial, as: UTF8.self)]).joined(separator: "\n")
        }
    }
    var standardError: String { self.errorText.withLockedValue { $0 } }

    /// Waits (bounded) for a line matching `predicate`.
    func waitForLine(timeout: Double = 20, _ predicate: (String) -> Bool) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = self.output.first(where: predicate) { return line }
            if !self.process.isRunning {
                throw HarnessError(
                    "\(self.name) exited with \(self.process.terminationStatus): \(self.standardError.suffix(2000))"
                )
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw HarnessError(
            "\(self.name) printed no expected line within \(timeout) s; stderr: \(self.standardError.suffix(2000))"
        )
    }

    /// Waits (bounded) until standard error satisfies `predicate` (or holds `text`), and says whether it
    /// did. A process logs an event after it acts on it (the agent answers the client, then logs why): a
    /// test that reads the log right after seeing the answer must wait for the line, not take what has been
    /// read so far.
    func waitForStandardError(timeout: Double = 10, _ predicate: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !predicate(self.standardError) {
            guard Date() < deadline else { return false }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return true
    }

    func waitForStandardError(containing text: String, timeout: Double = 10) -> Bool {
        self.waitForStandardError(timeout: timeout) { $0.contains(text) }
    }

    func signal(_ number: Int32) {
        if self.process.isRunning { kill(self.process.processIdentifier, number) }
    }

    /// Waits (bounded) for the process to exit and returns its status.
    func waitForExit(timeout: Double = 20) throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while self.process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        guard !self.process.isRunning else { throw HarnessError("\(self.name) did not exit within \(timeout) s") }
        return self.process.terminationStatus
    }

    /// The PIDs of this process's children (from /proc), e.g. the plugin the AWS CLI started.
    func childPIDs() -> [Int32] {
        let me = self.process.processIdentifier
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == me ? pid : nil
        }
    }

    func stop() {
        guard self.process.isRunning else { return }
        kill(self.process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while self.process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
        self.process.waitUntilExit()
    }

    deinit { self.stop() }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Starts `jumpgate arguments`, as `account` if given (else as this test process's user).
func launchJumpgate(
    _ name: String,
    _ arguments: [String],
    environment: [String: String] = [:],
    as account: UnprivilegedAccount?
) throws -> ChildProcess {
    try account?.process(name, arguments, environment: environment)
        ?? ChildProcess(name, arguments, environment: environment)
}

/// Runs a jumpgate command to completion (bounded), as `account` if given, and returns status and stdout.
func runJumpgate(
    _ arguments: [String],
    environment: [String: String] = [:],
    timeout: Double = 60,
    account: UnprivilegedAccount? = nil
) throws -> (Int32, String, String) {
    let child = try launchJumpgate(
        "jumpgate \(arguments.first ?? "")",
        arguments,
        environment: environment,
        as: account
    )
    let status = try child.waitForExit(timeout: timeout)
    child.waitForOutputEnd()
    return (status, child.output.joined(separator: "\n"), child.standardError)
}

/// Whether the tests' bounds on resident memory apply. Under a sanitizer a process's RSS also holds its
/// shadow memory, and under AddressSanitizer the freed blocks in its quarantine and the red zones around
/// every allocation, so those bounds are checked by the plain build (CI) and the sanitizers check what
/// they are for.
enum MemoryBound {
    static let applies = ProcessInfo.processInfo.environment["JUMPGATE_SANITIZER"] == nil
}

/// The state letter of process `pid` (`R`, `S`, `T` stopped, `Z` zombie, ...): the first field after the
/// command name in /proc/PID/stat; nil when there is no such process.
func processState(_ pid: Int32) -> Substring? {
    procFileText("/proc/\(pid)/stat").flatMap { $0.split(separator: ")").last?.split(separator: " ").first }
}

/// The whole of a file under /proc. `String(contentsOfFile:)` stops after about 4 KiB of one (such files
/// report a size of 0), which cuts `/proc/net/tcp` and `/proc/cpuinfo` short.
func procFileText(_ path: String) -> String? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
}
