import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import Testing

@testable import JumpgateClient

/// The client's check of a relay-blind re-offer in ResumeSession's answer (`PortForwarder.checked`): kept
/// only when asked for and for the agent certificate pinned at the start.
@Suite("Resume: the re-offer's certificate against the pin")
struct ResumePinTests {
    /// Counts the warnings logged through it.
    struct CountingHandler: LogHandler {
        let warnings: NIOLockedValueBox<[String]>
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            if event.level == .warning { self.warnings.withLockedValue { $0.append("\(event.message)") } }
        }
    }

    static let pinned = String(repeating: "ab", count: 32)

    static func grant(certificate: String?) throws -> SessionGrant {
        var members: [(key: String, value: JSONValue)] = [
            ("SessionId", "s-0123456789abcdef0"), ("TokenValue", "t"), ("StreamUrl", "wss://127.0.0.1:1/x"),
        ]
        if let certificate {
            let token = String(repeating: "A", count: PairingLine.tokenLength)
            members.append(
                (
                    "JumpgateBlindPath",
                    [
                        "PairingToken": .string(token), "ClientSecret": .string(token),
                        "AgentCertificateSHA256": .string(certificate),
                    ]
                )
            )
        }
        return try SessionGrant(json: .object(members))
    }

    @Test(
        "kept for the pinned certificate (any case); dropped, with a warning, for another; dropped when not asked for"
    )
    func pinChecked() throws {
        let warnings = NIOLockedValueBox<[String]>([])
        let logger = Logger(label: "pin") { _ in CountingHandler(warnings: warnings) }
        let offered = try Self.grant(certificate: Self.pinned)
        #expect(offered.blindPath != nil, "the fixture carries an offer")

        let kept = PortForwarder.checked(offered, pin: Self.pinned.uppercased(), logger: logger)
        #expect(kept.blindPath == offered.blindPath)
        #expect(warnings.withLockedValue { $0.isEmpty })

        let other = try Self.grant(certificate: String(repeating: "cd", count: 32))
        let refused = PortForwarder.checked(other, pin: Self.pinned, logger: logger)
        #expect(refused.blindPath == nil && refused.tokenValue == "t", "the WebSocket path, same grant otherwise")
        #expect(warnings.withLockedValue { $0.count } == 1)

        let unasked = PortForwarder.checked(offered, pin: nil, logger: logger)
        #expect(unasked.blindPath == nil)
        let none = PortForwarder.checked(try Self.grant(certificate: nil), pin: Self.pinned, logger: logger)
        #expect(none.blindPath == nil)
        #expect(warnings.withLockedValue { $0.count } == 1, "only a wrong certificate warns")
    }
}
