import Foundation
import JumpgateClient
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// Both hops on slow links (the fault proxy delays and throttles each direction), as a jump server far
/// away on a thin line: a transfer each way stays byte-exact, and the resume machinery (its deadlines are
/// tuned for fast links) still recovers from a cut on each hop without resending in a loop.
@Suite("Slow links: delay and a rate limit on both hops", .serialized)
struct SlowLinkTests {
    @Test("40 ms each way and 8 MB/s on both hops: byte-exact both ways through a client cut and the agent's link down")
    func slowLinksWithCuts() async throws {
        let links = try await NetworkDropTests.TwoLinks.make()
        let (agentLink, clientLink) = (links.agent, links.client)
        defer { links.close() }
        for link in [agentLink, clientLink] { link.shape(delay: .milliseconds(40), bytesPerSecond: 8_000_000) }
        let size = 24 << 20
        let started = ContinuousClock.now
        try await FullSpeedFaultTests.transfer(
            size: size,
            gatewayArguments: links.gatewayArguments,
            gatewayPort: links.port,
            agentEndpoint: links.agentEndpoint,
            agentReconnects: 1,
            clientResumes: 1
        ) { _, progress in
            let third = await progress.wait(untilBoth: size / 3)
            #expect(third && progress.inFlight(total: size), "the transfer ended before the client's cut")
            try await clientLink.blackholeAndCut()
            let twoThirds = await progress.wait(untilBoth: size * 2 / 3)
            #expect(twoThirds && progress.inFlight(total: size), "the transfer ended before the agent's link went down")
            try await agentLink.down(for: .seconds(2))
            return []
        }
        #expect(agentLink.cuts.withLockedValue { $0 } == 1 && clientLink.cuts.withLockedValue { $0 } == 1)
        // The links were really that thin: 24 MiB at 8 MB/s cannot take less than 3.1 s (a lower bound on
        // the harness, not a speed target).
        let elapsed = ContinuousClock.now - started
        print("SlowLinkTests: \(elapsed) for 24 MiB each way at 8 MB/s, cuts included")
        #expect(elapsed >= .milliseconds(3_100), "the proxy did not throttle: \(elapsed)")
    }
}
