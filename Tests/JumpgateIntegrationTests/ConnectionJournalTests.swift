import Foundation
import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateAgent

/// The agent's connection journal on disk: appends and acknowledgements replay to what was not yet
/// acknowledged, the file is emptied when everything is, compacted when enough of it is dead, and a torn
/// line loses nothing else.
@Suite("Connection journal: append-only acknowledgements, replay, compaction, torn lines")
struct ConnectionJournalTests {
    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "jumpgate-journal-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func record(_ number: Int) -> JSONValue {
        ["id": .string("record-\(number)"), "event": "ConnectionClosed", "streamId": .integer(Int64(number))]
    }

    static func ids(_ lines: [String]) -> [String] {
        lines.compactMap { try? JSONValue(parsing: $0)["id"]?.stringValue }
    }

    static func fileSize(_ journal: ConnectionJournal) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: journal.path))?[.size] as? Int) ?? -1
    }

    @Test("acknowledging appends one line; a reopened journal has exactly the unacknowledged records")
    func acknowledgementsReplay() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = ConnectionJournal(directory: directory)
        for number in 0..<10 { journal.append(Self.record(number)) }
        let before = Self.fileSize(journal)
        journal.acknowledge(4)
        // The records stay in the file; one short line names the last of them that is done.
        #expect(Self.fileSize(journal) == before + "{\"acknowledgedThrough\":\"record-3\"}\n".utf8.count)
        journal.append(Self.record(10))
        journal.acknowledge(3)
        #expect(Self.ids(journal.pending(limit: 100)) == (7...10).map { "record-\($0)" })
        let reopened = ConnectionJournal(directory: directory)
        #expect(Self.ids(reopened.pending(limit: 100)) == (7...10).map { "record-\($0)" })
        // More than there is acknowledges everything; nothing is left to send, so the file is empty.
        reopened.acknowledge(100)
        #expect(reopened.isEmpty)
        #expect(Self.fileSize(reopened) == 0)
        #expect(ConnectionJournal(directory: directory).isEmpty)
    }

    @Test("once enough of the file is dead it is rewritten with only what is left to send")
    func compaction() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = ConnectionJournal(directory: directory, compactionBytes: 2_000)
        var next = 0
        var largest = 0
        for _ in 0..<50 {
            for _ in 0..<5 {
                journal.append(Self.record(next))
                next += 1
            }
            journal.acknowledge(4)  // one record stays behind each round
            largest = max(largest, Self.fileSize(journal))
        }
        #expect(journal.pending(limit: 1_000).count == 50)
        // Bounded by the live records plus the compaction threshold, not by everything ever written.
        let live = journal.pending(limit: 1_000).reduce(0) { $0 + $1.utf8.count + 1 }
        #expect(largest < live + 2_000 + 200, "file reached \(largest) bytes with \(live) live")
        #expect(
            Self.ids(ConnectionJournal(directory: directory).pending(limit: 1_000))
                == Self.ids(journal.pending(limit: 1_000))
        )
    }

    @Test("a torn last line is dropped and ended, so the next record is not glued to it")
    func tornLine() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = ConnectionJournal(directory: directory)
        for number in 0..<3 { journal.append(Self.record(number)) }
        journal.acknowledge(1)
        // A crash mid-append: half a record at the end, no newline.
        let handle = try #require(FileHandle(forWritingAtPath: journal.path))
        handle.seekToEndOfFile()
        handle.write(Data("{\"id\":\"record-3\",\"ev".utf8))
        handle.closeFile()
        let reopened = ConnectionJournal(directory: directory)
        #expect(Self.ids(reopened.pending(limit: 10)) == ["record-1", "record-2"])
        reopened.append(Self.record(4))
        #expect(
            Self.ids(ConnectionJournal(directory: directory).pending(limit: 10)) == [
                "record-1", "record-2", "record-4",
            ]
        )
        // A torn acknowledgement: its records are sent again (the gateway drops resent ids), none lost.
        let torn = try #require(FileHandle(forWritingAtPath: journal.path))
        torn.seekToEndOfFile()
        torn.write(Data("{\"acknowledgedThrough\":\"rec".utf8))
        torn.closeFile()
        #expect(Self.ids(ConnectionJournal(directory: directory).pending(limit: 10)).count == 3)
    }

    @Test("replay: an acknowledgement drops through the record it names, nothing if that record is not there")
    func replayByID() {
        func line(_ number: Int) -> String { Self.record(number).serialized() }
        let through = { (id: String) in "{\"acknowledgedThrough\":\"\(id)\"}" }
        // The file lost record 2 (a failed write): the acknowledgement of 1 and 2 still drops only them.
        let lost = [line(1), line(3), through("record-2"), line(4)].joined(separator: "\n") + "\n"
        #expect(Self.ids(ConnectionJournal.replay(lost).lines) == ["record-1", "record-3", "record-4"])
        let kept = [line(1), line(2), line(3), through("record-2"), line(4)].joined(separator: "\n") + "\n"
        #expect(Self.ids(ConnectionJournal.replay(kept).lines) == ["record-3", "record-4"])
        // An acknowledgement of a record already acknowledged changes nothing.
        let twice = [line(1), line(2), through("record-2"), line(3), through("record-1")].joined(separator: "\n")
        #expect(Self.ids(ConnectionJournal.replay(twice).lines) == ["record-3"])
        // Only objects with a string id are records; anything else is dead, whatever it says.
        let odd = ["{\"acknowledged\":1.5}", "null", "[]", "{\"id\":7}", "{\"id\":\"x\"", line(5)].joined(
            separator: "\n"
        )
        let state = ConnectionJournal.replay(odd)
        #expect(Self.ids(state.lines) == ["record-5"])
        #expect(state.bytes == line(5).utf8.count + 1)
    }

    @Test("the file stays within the journal's bound: rewritten before dead lines would take it past it")
    func boundedFile() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let size = Self.record(0).serialized().utf8.count + 1
        let journal = ConnectionJournal(directory: directory, maximumBytes: 20 * size, compactionBytes: 1 << 20)
        for round in 0..<100 {
            for number in 0..<3 { journal.append(Self.record(round * 3 + number)) }
            journal.acknowledge(2)
            #expect(Self.fileSize(journal) <= 20 * size + 64, "round \(round): \(Self.fileSize(journal)) bytes")
        }
        // Live records beyond the bound are counted, not kept.
        #expect(journal.pending(limit: 1_000).count <= 20)
    }

    @Test("random appends, acknowledgements and reopenings keep exactly the unacknowledged records in order")
    func randomHistory() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        print("ConnectionJournalTests.randomHistory seed \(seed)")
        var rng = PatternStream(seed: seed)
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var journal = ConnectionJournal(directory: directory, compactionBytes: 1_500)
        var model: [String] = []
        var next = 0
        for _ in 0..<2_000 {
            switch rng.next() % 10 {
            case 0..<6:
                journal.append(Self.record(next))
                model.append("record-\(next)")
                next += 1
            case 6..<9:
                let count = Int(rng.next() % 6)
                journal.acknowledge(count)
                model.removeFirst(min(count, model.count))
            default:
                journal = ConnectionJournal(directory: directory, compactionBytes: 1_500)
            }
            #expect(Self.ids(journal.pending(limit: 10_000)) == model, "seed \(seed)")
        }
        #expect(Self.ids(ConnectionJournal(directory: directory).pending(limit: 10_000)) == model, "seed \(seed)")
    }
}

/// The record a target connection leaves when it closes (`ConnectionRecorder`, in an EmbeddedChannel).
@Suite("Connection recorder: the opening and closing records")
struct ConnectionRecorderTests {
    @Test("the duration comes from the monotonic clock, and the bytes the socket took are counted")
    func durationAndBytes() throws {
        let directory = try ConnectionJournalTests.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = ConnectionJournal(directory: directory)
        // Opened 1.5 s ago on the monotonic clock. The wall clock plays no part: when it read the opening
        // time, a step back while the connection was open gave 0 ms, and a step forward hours.
        let facts = ConnectionFacts(
            sessionID: "s",
            streamID: 3,
            destination: "db:5432",
            address: "127.0.0.1:5432",
            opened: .now() - .milliseconds(1500)
        )
        let channel = EmbeddedChannel(handler: ConnectionRecorder(facts: facts, journal: journal, onRecord: {}))
        try channel.writeOutbound(ByteBuffer(repeating: 1, count: 100))
        try channel.writeInbound(ByteBuffer(repeating: 2, count: 7))
        _ = try channel.finish(acceptAlreadyClosed: true)
        let records = journal.pending(limit: 10).compactMap { try? JSONValue(parsing: $0) }
        let closed = try #require(records.first { $0["event"]?.stringValue == "ConnectionClosed" })
        let duration = try #require(closed["durationMs"]?.int64Value)
        #expect(duration >= 1500 && duration < 60_000, "durationMs \(duration)")
        #expect(closed["bytesToTarget"]?.int64Value == 100 && closed["bytesFromTarget"]?.int64Value == 7)
    }

    static func recorder(_ journal: ConnectionJournal) -> ConnectionRecorder {
        let facts = ConnectionFacts(
            sessionID: "s-1",
            streamID: 3,
            destination: "db:5432",
            address: "127.0.0.1:5432",
            opened: .now()
        )
        return ConnectionRecorder(facts: facts, journal: journal) {}
    }

    static func events(_ journal: ConnectionJournal) -> [String] {
        journal.pending(limit: 100).compactMap { try? JSONValue(parsing: $0)["event"]?.stringValue }
    }

    @Test("the opening is journalled as the recorder joins the pipeline, before any write, once; the close after it")
    func openedBeforeAnyByte() throws {
        let directory = try ConnectionJournalTests.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = ConnectionJournal(directory: directory)
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5432)).wait()
        #expect(Self.events(journal).isEmpty)
        try channel.pipeline.syncOperations.addHandler(Self.recorder(journal), position: .first)
        // In the journal before the session can write the client's early bytes through it.
        #expect(Self.events(journal) == ["ConnectionOpened"])
        try channel.writeOutbound(ByteBuffer(string: "hello"))
        try channel.writeInbound(ByteBuffer(string: "hi"))
        #expect(Self.events(journal) == ["ConnectionOpened"])
        _ = try channel.finish(acceptAlreadyClosed: true)
        #expect(Self.events(journal) == ["ConnectionOpened", "ConnectionClosed"])
        let closed = try #require(journal.pending(limit: 100).last.flatMap { try? JSONValue(parsing: $0) })
        #expect(closed["bytesToTarget"]?.int64Value == 5 && closed["bytesFromTarget"]?.int64Value == 2)
    }
}
