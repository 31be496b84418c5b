import Foundation
import JumpgateWire
import Testing

/// One gateway per data directory, and a gateway that cannot start leaves the disk as it found it.
@Suite("Gateway data directory: exclusive, and untouched by a failed start", .serialized)
struct DataDirectoryLockTests {
    /// Every file under `directory` with its size and modification time.
    static func snapshot(_ directory: String) -> [String: String] {
        var result: [String: String] = [:]
        let fm = FileManager.default
        guard let enumerator = fm.enumerator(atPath: directory) else { return result }
        for case let path as String in enumerator {
            let attributes = (try? fm.attributesOfItem(atPath: directory + "/" + path)) ?? [:]
            result[path] =
                "\(attributes[.size] ?? "-") \((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
        }
        return result
    }

    static func gateway(_ directory: String, listen: String = "127.0.0.1:0") throws -> ChildProcess {
        try ChildProcess("gateway", ["server", "--data-dir", directory, "--listen", listen, "--format", "json"])
    }

    @Test("a second gateway on a held data directory exits non-zero naming the holder's PID, and writes nothing")
    func secondGatewayRefused() async throws {
        let root = NSTemporaryDirectory() + "jumpgate-lock-" + MessageID.random().description
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = try Self.gateway(root + "/gw")
        defer { first.stop() }
        let ready = try JSONValue(parsing: try first.waitForLine { $0.hasPrefix("{") })
        let before = Self.snapshot(root + "/gw")
        #expect(before["gateway.lock"] != nil && before["admin.credentials"] != nil && before["tls/ca.pem"] != nil)

        let second = try Self.gateway(root + "/gw")
        defer { second.stop() }
        #expect(try second.waitForExit() == 1)
        let pid = first.process.processIdentifier
        #expect(
            second.standardError.contains("another jumpgate server (PID \(pid)) is using the data directory"),
            "\(second.standardError)"
        )
        #expect(Self.snapshot(root + "/gw") == before, "the refused gateway changed the data directory")
        // The first one still serves.
        let port = try #require(ready["port"]?.int64Value)
        #expect(first.process.isRunning && port > 0)

        // Once the first stops, the directory is free again (the kernel drops the lock with the process).
        first.stop()
        let third = try Self.gateway(root + "/gw")
        defer { third.stop() }
        _ = try third.waitForLine { $0.hasPrefix("{") }
    }

    @Test(
        "a gateway that cannot bind its port writes nothing: a fresh directory is not created, an empty one stays empty"
    )
    func bindFailureWritesNothing() async throws {
        let root = NSTemporaryDirectory() + "jumpgate-bind-" + MessageID.random().description
        defer { try? FileManager.default.removeItem(atPath: root) }
        let holder = try Self.gateway(root + "/holder")
        defer { holder.stop() }
        let ready = try JSONValue(parsing: try holder.waitForLine { $0.hasPrefix("{") })
        let port = try #require(ready["port"]?.int64Value)

        let fresh = root + "/fresh/gw"
        let busy = try Self.gateway(fresh, listen: "127.0.0.1:\(port)")
        defer { busy.stop() }
        #expect(try busy.waitForExit() == 1)
        #expect(busy.standardError.contains("is already in use"), "\(busy.standardError)")
        #expect(!busy.standardError.contains("errno"), "no library internals: \(busy.standardError)")
        #expect(
            !FileManager.default.fileExists(atPath: root + "/fresh"),
            "a gateway that did not start created \(fresh) (or its parent)"
        )

        let empty = root + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let again = try Self.gateway(empty, listen: "127.0.0.1:\(port)")
        defer { again.stop() }
        #expect(try again.waitForExit() == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: empty).isEmpty)
    }
}
