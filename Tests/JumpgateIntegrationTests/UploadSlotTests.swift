import Testing

@testable import JumpgateAgent

/// The agent's uploaders' turn-taking, without time or sockets.
@Suite("Agent uploads: one at a time, gathered, run again when asked meanwhile")
struct UploadSlotTests {
    @Test("requests within a gathering make one; one upload runs; a request meanwhile runs it once more")
    func turns() {
        var slot = UploadSlot()
        let schedules = [slot.schedule(), slot.schedule(), slot.schedule()]
        #expect(schedules == [true, false, false])
        slot.gathered()
        let again = slot.schedule()
        #expect(again)
        let first = slot.begin()
        #expect(first && slot.inFlight)
        // Asked twice while running: it runs once more, not twice; take() never takes a busy slot.
        let meanwhile = [slot.begin(), slot.begin(), slot.take()]
        #expect(meanwhile == [false, false, false])
        let rerun = slot.end()
        #expect(rerun && !slot.inFlight)
        let second = slot.begin()
        let secondAgain = slot.end()
        #expect(second && !secondAgain)
        // take() takes only a free slot and leaves no request behind.
        let taken = [slot.take(), slot.take()]
        let afterTake = slot.end()
        #expect(taken == [true, false] && !afterTake)
    }
}
