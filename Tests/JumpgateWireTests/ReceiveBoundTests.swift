import JumpgateWire
import PropertyBased
import Testing

@Suite("ReceiveBound")
struct ReceiveBoundTests {
    @Test("pauses past the limit, resumes at half of it, and only once each way")
    func hysteresis() {
        var bound = ReceiveBound(limit: 1000)
        bound.queued(1000)
        #expect(bound.evaluate() == nil)
        bound.queued(1)
        #expect(bound.evaluate() == .pause)
        #expect(bound.evaluate() == nil)
        bound.queued(5000)
        #expect(bound.evaluate() == nil)
        bound.written(5500)
        #expect(bound.evaluate() == nil, "501 bytes still wait: above half the limit")
        bound.written(1)
        #expect(bound.evaluate() == .resume)
        #expect(bound.evaluate() == nil)
        #expect(bound.queuedBytes == 500)
    }

    @Test("disabled (smux v2 windows bound each stream): never pauses, and a pause in force ends")
    func disabled() {
        var bound = ReceiveBound(limit: 10)
        bound.queued(11)
        #expect(bound.evaluate() == .pause)
        bound.isEnabled = false
        #expect(bound.evaluate() == .resume)
        bound.queued(1000)
        #expect(bound.evaluate() == nil)
        #expect(!bound.isPaused)
    }

    @Test("written never goes below zero (a failed write and a forgotten stream both release bytes)")
    func neverNegative() {
        var bound = ReceiveBound(limit: 10)
        bound.queued(5)
        bound.written(8)
        #expect(bound.queuedBytes == 0)
    }

    @Test("property: paused exactly when the queue passed the limit and has not drained to half since")
    func property() async {
        await propertyCheck(input: Gen.int(in: -3000...3000).array(of: 0...200)) { steps in
            var bound = ReceiveBound(limit: 1000)
            var model = 0
            var paused = false
            for step in steps {
                if step >= 0 { bound.queued(step) } else { bound.written(-step) }
                model = max(0, model + step)
                _ = bound.evaluate()
                if !paused, model > 1000 { paused = true } else if paused, model <= 500 { paused = false }
                #expect(bound.isPaused == paused)
                #expect(bound.queuedBytes == model)
            }
        }
    }
}
