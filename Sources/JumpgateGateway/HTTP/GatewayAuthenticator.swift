import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import NIOHTTP1

/// Verifies SigV4 on a request head: users' keys for `ssm`, instances' keys for `ssmmessages`, and
/// either for a data channel's upgrade (an agent's, or a client's signed as the official plugin does
/// since 1.2.764.0).
struct GatewayAuthenticator {
    /// What a failed sign-in is answered with (each counted once, by `GatewayState.authenticationFailed`).
    static let signInErrorTypes: Set<String> = [
        "InvalidSignatureException", "MissingAuthenticationTokenException", "UnrecognizedClientException",
        "ThrottlingException",
    ]

    let state: GatewayState

    /// Whose keys may sign.
    enum Signers {
        case users, instances, usersOrInstances
    }

    /// The access key id a request claims (Authorization's Credential, or X-Amz-Credential), unverified:
    /// for throttling and the log only.
    static func claimedAccessKeyID(head: HTTPRequestHead, query: String) -> String? {
        var credential: Substring?
        if let authorization = head.headers.first(name: "Authorization"),
            let range = authorization.firstRange(of: "Credential=")
        {
            credential = authorization[range.upperBound...]
        } else if let range = query.firstRange(of: "X-Amz-Credential=") {
            credential = query[range.upperBound...]
        }
        guard let credential else { return nil }
        let id = credential.prefix { $0 != "/" && $0 != "%" && $0 != "," && $0 != "&" && $0 != " " }
        guard !id.isEmpty, id.count <= 128, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            return nil
        }
        return String(id)
    }

    func verify(
        head: HTTPRequestHead,
        path: String,
        query: String,
        service: String,
        signers: Signers,
        body: [UInt8]
    ) throws(APIError) -> SigV4Identity {
        let request = SigV4Request(
            method: head.method.rawValue,
            path: path,
            query: query,
            headers: head.headers.map { ($0.name, $0.value) },
            body: body
        )
        let state = self.state
        do {
            return try SigV4Verifier(service: service).verify(request, nowEpochSeconds: state.clock()) { key in
                switch signers {
                case .users: return state.userKey(accessKeyID: key)?.secret
                case .instances: return state.instanceSecret(instanceID: key)
                case .usersOrInstances:
                    return state.instanceSecret(instanceID: key) ?? state.userKey(accessKeyID: key)?.secret
                }
            }
        } catch {
            switch error.code {
            case .unknownAccessKey: throw APIError(400, "UnrecognizedClientException", error.reason)
            case .malformedAuthorization: throw APIError(400, "MissingAuthenticationTokenException", error.reason)
            default: throw APIError(400, "InvalidSignatureException", error.reason)
            }
        }
    }
}
