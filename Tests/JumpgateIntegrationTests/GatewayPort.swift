import NIOConcurrencyHelpers

/// The port a test's gateway listens on, set by the lab once the gateway has bound 127.0.0.1:0 and said
/// which port it got; 0 until then. Proxies made before the gateway ask it at each connection.
final class GatewayPort: Sendable {
    private let box = NIOLockedValueBox(0)

    var value: Int {
        get { self.box.withLockedValue { $0 } }
        set { self.box.withLockedValue { $0 = newValue } }
    }
}
