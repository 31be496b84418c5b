import FuzzSupport
import JumpgateAccess
import JumpgateWire

/// IAM policy documents on hostile text: parsing, and evaluation of what parses against requests that
/// exercise condition keys and wildcard paths. Properties: a document reads the same after the JSON
/// parser's round trip, evaluation is deterministic, and no policy allows a request when it is attached
/// beside an unconditional deny-all.
@_cdecl("FuzzPolicy_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, count in
        fuzzOne(FuzzInput(start, count))
        return 0
    }
}

let denyAll = try! PolicyDocument(
    parsing: #"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#
)

let requests = [
    RequestContext(
        action: "ssm:StartSession",
        resource: "arn:aws:ssm:us-east-1:000000000000:managed-instance/mi-0123456789abcdef0",
        values: [
            "aws:SourceIp": ["127.0.0.1"], "aws:username": ["alice"], "ssm:resourceTag/env": ["prod"],
            "aws:CurrentTime": ["2026-12-03T06:00:00Z"], "aws:SecureTransport": ["true"],
        ]
    ),
    RequestContext(
        action: "ssm:TerminateSession",
        resource: "arn:aws:ssm:us-east-1:000000000000:session/alice-0123456789abcdef0",
        values: ["aws:SourceIp": ["::1"], "aws:username": ["alice"], "ssm:SessionDocumentAccessCheck": ["true"]]
    ),
    RequestContext(action: "ssm:DescribeSessions", resource: "*"),
]

func fuzzOne(_ input: FuzzInput) {
    let text = String(decoding: input.bytes, as: UTF8.self)
    guard let document = try? PolicyDocument(parsing: text) else { return }
    let policy = NamedPolicy(name: "fuzzed", document: document)
    // The same document after the JSON parser's own round trip reads the same.
    let again = try? PolicyDocument(parsing: JSONValue(parsing: text).serialized())
    fuzzCheck(again == document, "a policy reads differently after a JSON round trip")
    for request in requests {
        let decision = PolicyEvaluator.evaluate([policy], request)
        fuzzCheck(PolicyEvaluator.evaluate([policy], request) == decision, "evaluation is not deterministic")
        let denied = PolicyEvaluator.evaluate([policy, NamedPolicy(name: "deny", document: denyAll)], request)
        fuzzCheck(!denied.isAllowed, "an Allow beat an explicit deny-all")
    }
}
