import JumpgateAccess
import Testing

/// The hash chain: intact chains verify; an edited, removed, reordered or re-hashed record is named.
@Suite("AuditChain")
struct AuditChainTests {
    static func chain(_ count: Int, from anchor: AuditAnchor = .genesis) -> [AuditEntry] {
        var entries: [AuditEntry] = []
        var head = anchor
        for index in 0..<count {
            let id = "event-\(anchor.sequence + Int64(index) + 1)"
            let entry = AuditChain.link(after: head, eventID: id, eventTime: 1000, record: #"{"eventID":"\#(id)"}"#)
            entries.append(entry)
            head = AuditAnchor(sequence: entry.sequence, hash: entry.hash)
        }
        return entries
    }

    static func log(_ entries: [AuditEntry]) -> [AuditLogLine] {
        entries.map { AuditLogLine(sequence: $0.sequence, eventID: $0.eventID, hash: $0.hash) }
    }

    @Test("an untouched chain verifies, with and without the log file")
    func intact() {
        let entries = Self.chain(10)
        #expect(AuditChain.verify(entries, anchor: .genesis) == nil)
        #expect(AuditChain.verify(entries, anchor: .genesis, log: Self.log(entries)) == nil)
        #expect(AuditChain.verify([], anchor: .genesis) == nil)
    }

    @Test("one changed byte names its record")
    func edited() {
        var entries = Self.chain(10)
        entries[4].record = #"{"eventID":"evenT-5"}"#
        let problem = AuditChain.verify(entries, anchor: .genesis)
        #expect(problem?.sequence == 5 && problem?.eventID == "event-5")
        #expect(problem?.reason.hasPrefix("changed") == true)
    }

    @Test("a removed record is named (by the log file when it has it)")
    func removed() {
        let all = Self.chain(10)
        var entries = all
        entries.remove(at: 6)
        #expect(AuditChain.verify(entries, anchor: .genesis)?.sequence == 7)
        #expect(AuditChain.verify(entries, anchor: .genesis, log: Self.log(all))?.eventID == "event-7")
    }

    @Test("two records swapped (contents, or sequence numbers) are caught at the first")
    func swapped() {
        var entries = Self.chain(10)
        (entries[2].record, entries[3].record) = (entries[3].record, entries[2].record)
        #expect(AuditChain.verify(entries, anchor: .genesis)?.sequence == 3)
        var renumbered = Self.chain(10)
        (renumbered[2].sequence, renumbered[3].sequence) = (renumbered[3].sequence, renumbered[2].sequence)
        renumbered.sort { $0.sequence < $1.sequence }
        #expect(AuditChain.verify(renumbered, anchor: .genesis)?.sequence == 3)
    }

    @Test("an edit with every later hash recomputed passes alone but not against the log file")
    func recomputed() {
        let original = Self.chain(8)
        var forged = original
        forged[3].record = #"{"eventID":"event-4","forged":true}"#
        var head = AuditAnchor(sequence: 3, hash: forged[2].hash)
        for index in 3..<forged.count {
            let relinked = AuditChain.link(
                after: head,
                eventID: forged[index].eventID,
                eventTime: 0,
                record: forged[index].record
            )
            forged[index] = relinked
            head = AuditAnchor(sequence: relinked.sequence, hash: relinked.hash)
        }
        #expect(AuditChain.verify(forged, anchor: .genesis) == nil)
        let problem = AuditChain.verify(forged, anchor: .genesis, log: Self.log(original))
        #expect(problem?.sequence == 4 && problem?.eventID == "event-4")
    }

    @Test("a truncated store is caught against the log file")
    func truncated() {
        let all = Self.chain(8)
        let problem = AuditChain.verify(Array(all.prefix(5)), anchor: .genesis, log: Self.log(all))
        #expect(problem?.sequence == 6 && problem?.eventID == "event-6")
    }

    @Test("after pruning, verification starts at the anchor its checkpoint names; a moved anchor is caught")
    func pruned() {
        var all = Self.chain(10)
        let anchor = AuditAnchor(sequence: all[3].sequence, hash: all[3].hash)
        // The checkpoint the gateway appends when it prunes records 1 to 4.
        let checkpoint = AuditChain.link(
            after: AuditAnchor(sequence: all[9].sequence, hash: all[9].hash),
            eventID: "event-11",
            eventTime: 2000,
            record:
                #"{"eventID":"event-11","eventName":"AuditRecordsPruned","serviceEventDetails":{"firstSequence":1,"lastSequence":4,"lastHash":"\#(anchor.hash)"}}"#,
            index: AuditIndex(eventName: "AuditRecordsPruned")
        )
        all.append(checkpoint)
        #expect(AuditChain.verify(Array(all.dropFirst(4)), anchor: anchor) == nil)
        // The log file may still hold the pruned records: they are not expected in the store.
        #expect(AuditChain.verify(Array(all.dropFirst(4)), anchor: anchor, log: Self.log(all)) == nil)
        // A prune that stopped between moving the anchor and deleting: the records before it are skipped.
        #expect(AuditChain.verify(all, anchor: anchor) == nil)
        let wrong = AuditAnchor(sequence: 4, hash: String(repeating: "f", count: 64))
        #expect(AuditChain.verify(Array(all.dropFirst(4)), anchor: wrong) != nil)
        // Records 5 and 6 removed and the anchor moved to 6 with its real hash: consistent links, but the
        // checkpoint names 4.
        let moved = AuditAnchor(sequence: all[5].sequence, hash: all[5].hash)
        let problem = AuditChain.verify(Array(all.dropFirst(6)), anchor: moved)
        #expect(problem?.reason.contains("anchor") == true)
        // No checkpoint at all.
        #expect(AuditChain.verify(Array(Self.chain(10).dropFirst(4)), anchor: anchor) != nil)
        // A later record that only quotes the name (a user's StartSession reason) is no checkpoint: the
        // verification still finds the real one (it took the quoting record and reported tampering).
        let quoting = AuditChain.link(
            after: AuditAnchor(sequence: checkpoint.sequence, hash: checkpoint.hash),
            eventID: "event-12",
            eventTime: 2001,
            record:
                #"{"eventID":"event-12","eventName":"StartSession","requestParameters":{"reason":"AuditRecordsPruned"}}"#,
            index: AuditIndex(eventName: "StartSession")
        )
        #expect(AuditChain.verify(Array((all + [quoting]).dropFirst(4)), anchor: anchor) == nil)
        var unindexed = quoting
        unindexed.index = AuditIndex(eventName: "")
        #expect(AuditChain.verify(Array((all + [unindexed]).dropFirst(4)), anchor: anchor) == nil)
    }

    @Test("an index column that disagrees with its record is caught; two log lines for one number too")
    func indexAndReuse() {
        var entries = Self.chain(5)
        entries[2].eventID = "event-other"
        #expect(AuditChain.verify(entries, anchor: .genesis)?.sequence == 3)
        var timed = Self.chain(3)
        timed[1].record = #"{"eventID":"event-2","eventTime":"2026-12-02T10:00:00Z"}"#
        timed = Self.relinked(timed)
        #expect(AuditChain.verify(timed, anchor: .genesis)?.reason.contains("time") == true)
        // A time past Int64's range in seconds (tampered): reported, where converting it trapped.
        timed[1].record = #"{"eventID":"event-2","eventTime":"99999999999999999999"}"#
        timed = Self.relinked(timed)
        #expect(AuditChain.verify(timed, anchor: .genesis)?.sequence == 2)
        let original = Self.chain(4)
        var reused = Self.log(original)
        reused.append(AuditLogLine(sequence: 3, eventID: "event-lost", hash: String(repeating: "a", count: 64)))
        #expect(AuditChain.verify(original, anchor: .genesis, log: reused)?.reason.contains("two different") == true)
    }

    /// The entries with their hashes recomputed (their texts as they are).
    static func relinked(_ entries: [AuditEntry]) -> [AuditEntry] {
        var head = AuditAnchor.genesis
        return entries.map { entry in
            let linked = AuditChain.link(
                after: head,
                eventID: entry.eventID,
                eventTime: entry.eventTime,
                record: entry.record,
                index: entry.index
            )
            head = AuditAnchor(sequence: linked.sequence, hash: linked.hash)
            return linked
        }
    }

    @Test("log lines parse from the file's JSON; torn lines are skipped")
    func logLines() {
        let line = AuditLogLine(line: #"{"eventID":"e1","jumpgateChain":{"sequence":7,"previousHash":"a","hash":"b"}}"#)
        #expect(line == AuditLogLine(sequence: 7, eventID: "e1", hash: "b"))
        #expect(AuditLogLine(line: #"{"eventID":"e1","jumpgateCh"#) == nil)
        #expect(AuditLogLine(line: #"{"eventID":"e1"}"#) == nil)
    }
}
