import Foundation

/// Runs the executables this build produced (they sit next to the test bundle), feeding standard input
/// and capturing both outputs.
enum BinaryRunner {
    struct Result {
        var status: Int32
        var stdout: [UInt8]
        var stderr: String
        var stdoutText: String { String(decoding: self.stdout, as: UTF8.self) }
    }

    static var productsDirectory: URL {
        if let override = ProcessInfo.processInfo.environment["JUMPGATE_BIN_DIR"] {
            return URL(fileURLWithPath: override)
        }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = executable.deletingLastPathComponent()
        // On macOS the bundle is a directory tree; walk up to the products directory.
        while directory.path != "/",
            !FileManager.default.fileExists(atPath: directory.appendingPathComponent("jumpgate").path)
        {
            directory = directory.deletingLastPathComponent()
        }
        return directory
    }

    static func run(
        _ name: String,
        _ arguments: [String],
        stdin: [UInt8] = [],
        environment: [String: String]? = nil
    ) throws -> Result {
        try self.run(
            executable: self.productsDirectory.appendingPathComponent(name),
            arguments,
            stdin: stdin,
            environment: environment
        )
    }

    /// Runs any program (`readelf`, `unshare`), as ``run(_:_:stdin:environment:)`` runs a product.
    static func run(
        executable: URL,
        _ arguments: [String],
        stdin: [UInt8] = [],
        environment: [String: String]? = nil
    ) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let input = Pipe()
        let output = Pipe()
        let error = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = error
        try process.run()
        input.fileHandleForWriting.write(Data(stdin))
        try input.fileHandleForWriting.close()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: [UInt8](out),
            stderr: String(decoding: err, as: UTF8.self)
        )
    }
}
