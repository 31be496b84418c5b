import Foundation
import JumpgateClient
import JumpgateWire
import Testing

/// `jumpgate audit verify` against a store the test tampers with (through SQLite itself, as an attacker
/// with the file would), with and without the `--audit-log` file; the log's rotation; pruning.
@Suite("Audit trail: tamper evidence, rotation, retention", .serialized)
struct AuditVerifyTests {
    /// Runs Python's sqlite3 on the store (`script` gets `db` and `hashlib`).
    static func tamper(_ store: String, _ script: String) throws {
        let (status, _, errors) = try runProcess(
            "python3",
            [
                "-c", "import sqlite3, hashlib, sys\ndb = sqlite3.connect(sys.argv[1])\n" + script + "\ndb.commit()",
                store,
            ]
        )
        #expect(status == 0, "\(errors)")
    }

    static func runProcess(_ executable: String, _ arguments: [String]) throws -> (Int32, String, String) {
        let child = try ChildProcess(executable, arguments, executable: executable)
        let status = try child.waitForExit(timeout: 30)
        child.waitForOutputEnd()
        return (status, child.output.joined(separator: "\n"), child.standardError)
    }

    /// `audit verify --data-dir` on a copy of the data directory after `script`; returns status and output.
    static func verify(
        copyOf directory: String,
        log: String?,
        after script: String?
    ) throws -> (Int32, JSONValue) {
        let copy = directory + "-copy-" + MessageID.random().description
        try FileManager.default.copyItem(atPath: directory, toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        if let script { try Self.tamper(copy + "/jumpgate.sqlite", script) }
        var arguments = ["audit", "verify", "--data-dir", copy, "--format", "json"]
        if let log { arguments += ["--log", log] }
        let (status, output, errors) = try runJumpgate(arguments)
        return (status, (try? JSONValue(parsing: output)) ?? ["unparsed": .string(output + errors)])
    }

    static func eventID(_ directory: String, sequence: Int) throws -> String {
        let (_, output, _) = try Self.runProcess(
            "python3",
            [
                "-c",
                "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT event_id FROM audit_records WHERE sequence=?', (int(sys.argv[2]),)).fetchone()[0])",
                directory + "/jumpgate.sqlite", "\(sequence)",
            ]
        )
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(
        "verify passes untouched, and names the record after an edit, a deletion, a swap, and a re-hashed edit (against the log)"
    )
    func tamperEvidence() async throws {
        let directory = NSTemporaryDirectory() + "jumpgate-audit-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/audit.jsonl"
        let gateway = try ChildProcess(
            "gateway",
            [
                "server", "--data-dir", directory + "/gw", "--listen", "127.0.0.1:0", "--format", "json", "--audit-log",
                log,
            ]
        )
        defer { gateway.stop() }
        let ready = try JSONValue(parsing: try gateway.waitForLine { $0.hasPrefix("{") })
        let environment = [
            "AWS_SHARED_CREDENTIALS_FILE": try #require(ready["credentialsFile"]?.stringValue),
            "AWS_CONFIG_FILE": try #require(ready["configFile"]?.stringValue), "AWS_PROFILE": "jumpgate-admin",
            "HOME": directory, "AWS_CA_BUNDLE": "",
        ]
        for name in ["alice", "bob", "carol", "dave"] {
            let (status, _, errors) = try runJumpgate(["admin", "users", "create", name], environment: environment)
            #expect(status == 0, "\(errors)")
        }
        _ = try runJumpgate(["admin", "users", "list"], environment: environment)
        let (online, verified, _) = try runJumpgate(["audit", "verify"], environment: environment)
        #expect(
            online == 0 && verified.contains("intact: 5 records") && verified.contains("matches the log file"),
            "\(verified)"
        )

        // Rotation: the file is moved away and SIGHUP reopens a new one at the path.
        try FileManager.default.moveItem(atPath: log, toPath: log + ".1")
        gateway.signal(SIGHUP)
        try await ConnectionRecordsTests.eventually("the log reopened") {
            _ = try runJumpgate(["admin", "groups", "list"], environment: environment)
            return FileManager.default.fileExists(atPath: log)
        }
        // Offline verification works while the gateway runs (SQLite's WAL lets a reader in).
        let (running, runningText, runningErrors) = try runJumpgate([
            "audit", "verify", "--data-dir", directory + "/gw",
        ])
        #expect(running == 0 && runningText.contains("intact"), "\(runningText) \(runningErrors)")
        gateway.signal(SIGTERM)
        #expect(try gateway.waitForExit() == 0)
        // The chain spans both files; together they cover every record.
        let rotated =
            try String(contentsOfFile: log + ".1", encoding: .utf8) + (try String(contentsOfFile: log, encoding: .utf8))
        try rotated.write(toFile: directory + "/both.jsonl", atomically: true, encoding: .utf8)
        let both = directory + "/both.jsonl"
        let data = directory + "/gw"

        let (intact, answer) = try Self.verify(copyOf: data, log: both, after: nil)
        #expect(intact == 0 && answer["Intact"]?.boolValue == true, "\(answer.serialized())")
        let records = try #require(answer["Records"]?.int64Value)
        #expect(records >= 7)

        // One byte of record 3 changed.
        let third = try Self.eventID(data, sequence: 3)
        let (edited, editedAnswer) = try Self.verify(
            copyOf: data,
            log: nil,
            after:
                "db.execute(\"UPDATE audit_records SET record = substr(record, 1, 40) || 'X' || substr(record, 42) WHERE sequence = 3\")"
        )
        #expect(
            edited == 1 && editedAnswer["Problem"]?["EventId"]?.stringValue == third,
            "\(editedAnswer.serialized())"
        )

        // Record 4 deleted: named by the log file.
        let fourth = try Self.eventID(data, sequence: 4)
        let (deleted, deletedAnswer) = try Self.verify(
            copyOf: data,
            log: both,
            after: "db.execute('DELETE FROM audit_records WHERE sequence = 4')"
        )
        #expect(
            deleted == 1 && deletedAnswer["Problem"]?["EventId"]?.stringValue == fourth,
            "\(deletedAnswer.serialized())"
        )

        // Records 2 and 3 swapped (their contents change places).
        let second = try Self.eventID(data, sequence: 2)
        let (swapped, swappedAnswer) = try Self.verify(
            copyOf: data,
            log: nil,
            after: """
                a = db.execute('SELECT event_id, record, event_name, user_name FROM audit_records WHERE sequence = 2').fetchone()
                b = db.execute('SELECT event_id, record, event_name, user_name FROM audit_records WHERE sequence = 3').fetchone()
                db.execute('UPDATE audit_records SET event_id=?, record=?, event_name=?, user_name=? WHERE sequence = 2', b)
                db.execute('UPDATE audit_records SET event_id=?, record=?, event_name=?, user_name=? WHERE sequence = 3', a)
                """
        )
        #expect(swapped == 1, "\(swappedAnswer.serialized())")
        #expect(
            [second, third].contains(swappedAnswer["Problem"]?["EventId"]?.stringValue ?? ""),
            "\(swappedAnswer.serialized())"
        )

        // An edit of record 3 with every later hash recomputed: the chain alone is consistent, the log is not.
        let rehash = """
            db.execute("UPDATE audit_records SET record = substr(record, 1, 40) || 'X' || substr(record, 42) WHERE sequence = 3")
            rows = db.execute('SELECT sequence, record, previous_hash FROM audit_records ORDER BY sequence').fetchall()
            previous = rows[0][2]
            for sequence, record, _ in rows:
                digest = hashlib.sha256(('%s\\n%d\\n%s' % (previous, sequence, record)).encode()).hexdigest()
                db.execute('UPDATE audit_records SET previous_hash = ?, hash = ? WHERE sequence = ?', (previous, digest, sequence))
                previous = digest
            """
        let (alone, aloneAnswer) = try Self.verify(copyOf: data, log: nil, after: rehash)
        #expect(alone == 0, "the recomputed chain is consistent in itself: \(aloneAnswer.serialized())")
        let (caught, caughtAnswer) = try Self.verify(copyOf: data, log: both, after: rehash)
        #expect(
            caught == 1 && caughtAnswer["Problem"]?["EventId"]?.stringValue == third,
            "\(caughtAnswer.serialized())"
        )

        // The last records removed (truncation): caught against the log.
        let (truncated, truncatedAnswer) = try Self.verify(
            copyOf: data,
            log: both,
            after: "db.execute('DELETE FROM audit_records WHERE sequence > 5')"
        )
        #expect(truncated == 1, "\(truncatedAnswer.serialized())")
        #expect(truncatedAnswer["Problem"]?["Sequence"]?.int64Value == 6, "\(truncatedAnswer.serialized())")
    }

    @Test("retention prunes old records at start and leaves a checkpoint; the chain still verifies")
    func retention() async throws {
        let directory = NSTemporaryDirectory() + "jumpgate-retention-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let arguments = ["server", "--data-dir", directory + "/gw", "--listen", "127.0.0.1:0", "--format", "json"]
        var gateway = try ChildProcess("gateway", arguments)
        let ready = try JSONValue(parsing: try gateway.waitForLine { $0.hasPrefix("{") })
        let environment = [
            "AWS_SHARED_CREDENTIALS_FILE": try #require(ready["credentialsFile"]?.stringValue),
            "AWS_CONFIG_FILE": try #require(ready["configFile"]?.stringValue), "AWS_PROFILE": "jumpgate-admin",
            "HOME": directory, "AWS_CA_BUNDLE": "",
        ]
        for name in ["alice", "bob"] {
            _ = try runJumpgate(["admin", "users", "create", name], environment: environment)
        }
        gateway.signal(SIGTERM)
        _ = try gateway.waitForExit()
        // Waits (bounded) until those records are more than a second old in whole seconds (times are stored
        // as whole seconds): then a 1 s retention covers them.
        let written = Date()
        try await ConnectionRecordsTests.eventually("the records to age") { Date().timeIntervalSince(written) > 2.1 }
        gateway = try ChildProcess("gateway-pruning", arguments + ["--audit-retention", "1s"])
        defer { gateway.stop() }
        _ = try gateway.waitForLine { $0.hasPrefix("{") }
        let (status, output, errors) = try runJumpgate(["audit", "list", "--format", "json"], environment: environment)
        #expect(status == 0, "\(errors)")
        let events = (try JSONValue(parsing: output)).arrayValue ?? []
        let names = events.compactMap { $0["eventName"]?.stringValue }
        #expect(!names.contains("CreateUser"), "\(names)")
        let checkpoint = try #require(events.first { $0["eventName"]?.stringValue == "AuditRecordsPruned" })
        #expect(checkpoint["serviceEventDetails"]?["firstSequence"]?.int64Value == 1)
        #expect(checkpoint["serviceEventDetails"]?["lastSequence"]?.int64Value == 2)
        let (verified, text, _) = try runJumpgate(["audit", "verify"], environment: environment)
        #expect(verified == 0 && text.contains("intact"), "\(text)")
    }
}
