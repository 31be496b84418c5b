import JumpgateWire
import NIOCore
import Testing

/// smux v2 windows that grow while their reader keeps up (SmuxSession.dataConsumed).
@Suite("smux v2 growing windows")
struct SmuxWindowGrowthTests {
    /// Opens a v2 stream from `client` to `server` and hands the server's window to the client.
    static func openV2(_ client: inout SmuxSession, _ server: inout SmuxSession) throws -> SmuxStreamID {
        let (id, frames) = try client.openStream()
        for frame in frames { _ = try server.frameReceived(frame) }
        // The server's window, as its first data back on the stream would carry it.
        if let update = server.takeWindowAnnouncement(on: id) {
            _ = try client.frameReceived(.windowUpdate(streamID: id, update))
        }
        return id
    }

    /// Sends up to `count` bytes on `id` as the window allows; the server consumes each frame at once when
    /// `consume`, and its updates go back to the client. Returns the bytes moved and the updates' windows.
    static func move(
        _ count: Int,
        on id: SmuxStreamID,
        _ client: inout SmuxSession,
        _ server: inout SmuxSession,
        consume: Bool = true
    ) throws -> (moved: Int, windows: [UInt32]) {
        var moved = 0
        var windows: [UInt32] = []
        while moved < count {
            let n = min(client.sendableBytes(on: id), count - moved)
            if n == 0 { break }
            try client.dataWillBeSent(on: id, count: n)
            let frame = SmuxFrame(version: 2, command: .psh, streamID: id, data: ByteBuffer(repeating: 1, count: n))
            guard case .data = try server.frameReceived(frame) else {
                throw WireError(.smuxProtocolViolation, "no data")
            }
            moved += n
            if consume, let update = server.dataConsumed(on: id, count: n) {
                windows.append(update.windowUpdate!.window)
                _ = try client.frameReceived(update)
            }
        }
        return (moved, windows)
    }

    /// A client and a server whose windows start at 1 MiB and may grow to 8 MiB within `budget`.
    static func growingPair(budget: UInt32) -> (SmuxSession, SmuxSession) {
        let configuration = { (role: SmuxSession.Role) in
            SmuxSession.Configuration(
                version: 2,
                role: role,
                streamReceiveWindow: 1 << 20,
                maximumStreamReceiveWindow: 8 << 20,
                windowGrowthBudget: budget
            )
        }
        return (SmuxSession(configuration: configuration(.client)), SmuxSession(configuration: configuration(.server)))
    }

    @Test("v2: a stream whose reader keeps up doubles its window at each update, up to the maximum")
    func v2WindowGrows() throws {
        var (client, server) = Self.growingPair(budget: 64 << 20)
        let id = try Self.openV2(&client, &server)
        #expect(server.receiveWindow(of: id) == 1 << 20)
        let result = try Self.move(32 << 20, on: id, &client, &server)
        #expect(result.moved == 32 << 20)
        // An update every quarter window: 1 -> 2 after 256 KiB, 2 -> 4 after 512 KiB, 4 -> 8 after 1 MiB.
        #expect(Array(result.windows.prefix(4)) == [2 << 20, 4 << 20, 8 << 20, 8 << 20])
        #expect(server.receiveWindow(of: id) == 8 << 20)
        #expect(server.grownWindowBytes == 7 << 20)

        // The reader stops: the client may now have the whole grown window in flight, and not a byte more.
        let stalled = try Self.move(64 << 20, on: id, &client, &server, consume: false)
        #expect(stalled.moved <= 8 << 20)
        #expect(client.sendableBytes(on: id) == 0)
        #expect(throws: WireError.self) {
            try server.frameReceived(
                SmuxFrame(version: 2, command: .psh, streamID: id, data: ByteBuffer(repeating: 1, count: 8 << 20))
            )
        }
    }

    @Test("v2: windows grow only within the session's budget, which a closed stream gives back")
    func v2WindowBudget() throws {
        var (client, server) = Self.growingPair(budget: 8 << 20)
        let a = try Self.openV2(&client, &server)
        let b = try Self.openV2(&client, &server)
        _ = try Self.move(16 << 20, on: a, &client, &server)
        #expect(server.receiveWindow(of: a) == 8 << 20)
        #expect(server.grownWindowBytes == 7 << 20)
        // B may grow by what is left (1 MiB: 1 -> 2), not to 4.
        _ = try Self.move(16 << 20, on: b, &client, &server)
        #expect(server.receiveWindow(of: b) == 2 << 20)
        #expect(server.grownWindowBytes == 8 << 20)

        // A ends both ways: its 7 MiB go back to the budget, and B grows at its next updates.
        let finFrame = client.closeStream(a)
        let fin = try #require(finFrame)
        _ = try server.frameReceived(fin)
        _ = server.closeStream(a)
        #expect(server.grownWindowBytes == 1 << 20)
        _ = try Self.move(16 << 20, on: b, &client, &server)
        #expect(server.receiveWindow(of: b) == 8 << 20)
        #expect(server.grownWindowBytes == 7 << 20)
        // An aborted stream gives its growth back too.
        _ = server.abortStream(b)
        #expect(server.grownWindowBytes == 0)
    }

    @Test("v2: a stream whose reader never consumes keeps its starting window")
    func v2StoppedReaderDoesNotGrow() throws {
        var client = SmuxSession(configuration: .init(version: 2, role: .client))
        var server = SmuxSession(configuration: .init(version: 2, role: .server))
        let id = try Self.openV2(&client, &server)
        let result = try Self.move(64 << 20, on: id, &client, &server, consume: false)
        #expect(result.moved == 2 << 20)
        #expect(server.receiveWindow(of: id) == 2 << 20)
        #expect(server.grownWindowBytes == 0)
    }

    @Test("v2: data dropped for a closed connection, and a stream the peer finished, do not grow the window")
    func v2NoGrowthWithoutReader() throws {
        var (client, server) = Self.growingPair(budget: 64 << 20)
        let id = try Self.openV2(&client, &server)
        func updates(grow: Bool) -> [UInt32] {
            (0..<16).compactMap { _ in
                server.dataConsumed(on: id, count: 256 * 1024, grow: grow)?.windowUpdate?.window
            }
        }
        // Counted as consumed without growing (the local connection is gone): updates go out, the window stays.
        var windows = updates(grow: false)
        #expect(!windows.isEmpty && windows.allSatisfy { $0 == 1 << 20 })
        // The peer finished the stream: what is still consumed does not grow it either.
        let finFrame = client.closeStream(id)
        let fin = try #require(finFrame)
        _ = try server.frameReceived(fin)
        windows = updates(grow: true)
        #expect(!windows.isEmpty && windows.allSatisfy { $0 == 1 << 20 })
        #expect(server.grownWindowBytes == 0)
    }

    @Test("v2: a stream kept for the peer's FIN after its reader left gives its growth back, and grows no more")
    func v2ReaderGoneReturnsGrowth() throws {
        // 7 MiB of growth: B can reach the 8 MiB maximum only if A's 1 MiB comes back.
        var (client, server) = Self.growingPair(budget: 7 << 20)
        let a = try Self.openV2(&client, &server)
        let b = try Self.openV2(&client, &server)
        _ = try Self.move(256 << 10, on: a, &client, &server)
        #expect(server.receiveWindow(of: a) == 2 << 20)
        #expect(server.grownWindowBytes == 1 << 20)
        // A's reader (its local connection) is gone; its FIN went, the peer's half is still open.
        _ = server.closeStream(a)
        #expect(server.isOpen(a))
        server.readerGone(a)
        #expect(server.grownWindowBytes == 0)
        // The window the peer was told stays (it may still send that much, dropped and credited), and
        // consuming never grows it again, even when growth is asked for.
        #expect(server.receiveWindow(of: a) == 2 << 20)
        for _ in 0..<8 { _ = server.dataConsumed(on: a, count: 512 << 10) }
        #expect(server.receiveWindow(of: a) == 2 << 20)
        #expect(server.grownWindowBytes == 0)
        _ = try Self.move(16 << 20, on: b, &client, &server)
        #expect(server.receiveWindow(of: b) == 8 << 20)
        #expect(server.grownWindowBytes == 7 << 20)
        // A's end gives back nothing a second time.
        let finFrame = client.closeStream(a)
        _ = try server.frameReceived(try #require(finFrame))
        #expect(!server.isOpen(a))
        #expect(server.grownWindowBytes == 7 << 20)
    }
}
