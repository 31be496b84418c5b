import JumpgateWire
import Testing

@Suite("Stream refusals (ConnectToPortError and connect-errors)")
struct StreamRefusalsTests {
    let one = SmuxStreamID(1)
    let three = SmuxStreamID(3)

    @Test("a FIN without a flag is a normal end, with or without data")
    func noFlagNoRefusal() {
        var refusals = StreamRefusals()
        let silent = refusals.finReceived(for: self.one, streamGotData: false)
        let answered = refusals.finReceived(for: self.three, streamGotData: true)
        #expect(silent == nil && answered == nil)
    }

    @Test("the official agent's flag belongs to the next FIN of a stream that got no data")
    func officialFlag() {
        var refusals = StreamRefusals()
        refusals.flagReceived()
        let answered = refusals.finReceived(for: self.one, streamGotData: true)
        #expect(answered == nil, "an answered stream ended normally")
        let refused = refusals.finReceived(for: self.three, streamGotData: false)
        #expect(refused == .init(reason: nil))
        let next = refusals.finReceived(for: SmuxStreamID(5), streamGotData: false)
        #expect(next == nil, "the flag is spent: the next data-less FIN is a normal end")
    }

    @Test("connect-errors names the stream: its FIN is the refusal even if data came, and carries the reason")
    func namedRefusal() {
        var refusals = StreamRefusals()
        let held = refusals.reasonReceived("10.0.0.9:5432 is not allowed", for: self.three)
        #expect(held)
        refusals.flagReceived()
        let refused = refusals.finReceived(for: self.three, streamGotData: true)
        #expect(refused == .init(reason: "10.0.0.9:5432 is not allowed"))
    }

    @Test("a reason whose flag never came is forgotten at its stream's FIN")
    func reasonWithoutFlag() {
        var refusals = StreamRefusals()
        refusals.reasonReceived("refused", for: self.one)
        let first = refusals.finReceived(for: self.one, streamGotData: false)
        #expect(first == nil)
        refusals.flagReceived()
        let later = refusals.finReceived(for: self.three, streamGotData: false)
        #expect(later == .init(reason: nil), "a stale reason was attached to another stream")
    }

    @Test("a FIN forgets its stream's reason: reasons for streams that ended never fill the bound")
    func finForgetsReason() {
        var refusals = StreamRefusals()
        for id in 0..<UInt32(2 * StreamRefusals.maximumReasons) {
            refusals.reasonReceived("r\(id)", for: SmuxStreamID(id * 2 + 1))
            _ = refusals.finReceived(for: SmuxStreamID(id * 2 + 1), streamGotData: true)
        }
        let held = refusals.reasonReceived("still room", for: SmuxStreamID(999_999))
        #expect(held, "reasons of ended streams were kept")
    }

    @Test("reasons held are bounded; a reason for a stream already held replaces it")
    func bounded() {
        var refusals = StreamRefusals()
        var held = 0
        for id in 0..<UInt32(StreamRefusals.maximumReasons)
        where refusals.reasonReceived("r\(id)", for: SmuxStreamID(id * 2 + 1)) {
            held += 1
        }
        #expect(held == StreamRefusals.maximumReasons)
        let tooMany = refusals.reasonReceived("one too many", for: SmuxStreamID(999_999))
        #expect(!tooMany)
        let replaced = refusals.reasonReceived("again", for: self.one)
        #expect(replaced)
        refusals.flagReceived()
        let refused = refusals.finReceived(for: self.one, streamGotData: true)
        #expect(refused == .init(reason: "again"))
    }
}
