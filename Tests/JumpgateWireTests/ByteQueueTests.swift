import JumpgateWire
import NIOCore
import PropertyBased
import Testing

@Suite("ByteQueue")
struct ByteQueueTests {
    @Test("bytes come out in order, split across and within the queued buffers")
    func order() {
        var queue = ByteQueue()
        queue.append(ByteBuffer(string: "hello "))
        queue.append(ByteBuffer())
        queue.append(ByteBuffer(string: "world"))
        #expect(queue.readableBytes == 11)
        var out = ByteBuffer()
        queue.move(3, into: &out)
        #expect(String(buffer: out) == "hel")
        queue.move(5, into: &out)
        #expect(String(buffer: out) == "hello wo")
        queue.move(100, into: &out)
        #expect(String(buffer: out) == "hello world")
        #expect(queue.isEmpty)
    }

    @Test("property: any sequence of appends and moves preserves the byte stream")
    func property() async {
        await propertyCheck(input: Gen.int(in: 0...2000).array(of: 1...40)) { sizes in
            var queue = ByteQueue()
            var expected = ByteBuffer()
            var out = ByteBuffer()
            var next: UInt8 = 0
            for (index, size) in sizes.enumerated() {
                var chunk = ByteBuffer()
                for _ in 0..<size {
                    chunk.writeInteger(next)
                    next &+= 1
                }
                expected.writeImmutableBuffer(chunk)
                queue.append(chunk)
                if index % 3 == 2 { queue.move(size * 2 / 3 + 1, into: &out) }
            }
            queue.move(queue.readableBytes, into: &out)
            #expect(out == expected)
            #expect(queue.isEmpty)
        }
    }
}
