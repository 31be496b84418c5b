import JumpgateAccess
import Testing

/// Condition operators as IAM defines them: each operator, IfExists, Null, negation with an absent key,
/// and the multi-valued qualifiers.
@Suite("Condition operators")
struct ConditionTests {
    /// Whether a one-statement Allow with `condition` (the JSON of a Condition block) allows a request
    /// with `values`.
    static func allows(_ condition: String, _ values: [String: [String]]) throws -> Bool {
        let text =
            #"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*", "Condition": \#(condition)}}"#
        let document = try PolicyDocument(parsing: text)
        return PolicyEvaluator.evaluate(
            [NamedPolicy(name: "p", document: document)],
            RequestContext(action: "ssm:StartSession", resource: "*", values: values)
        ).isAllowed
    }

    @Test("strings: equals (case-sensitive and not), like with * and ?, and their negations")
    func strings() throws {
        let host = { (value: String) in ["jumpgate:RemoteHost": [value]] }
        #expect(
            try Self.allows(
                #"{"StringEquals": {"jumpgate:RemoteHost": ["db.internal", "mq.internal"]}}"#,
                host("mq.internal")
            )
        )
        #expect(try !Self.allows(#"{"StringEquals": {"jumpgate:RemoteHost": "db.internal"}}"#, host("DB.internal")))
        #expect(
            try Self.allows(#"{"StringEqualsIgnoreCase": {"jumpgate:RemoteHost": "db.internal"}}"#, host("DB.internal"))
        )
        #expect(
            try Self.allows(#"{"StringLike": {"jumpgate:RemoteHost": "db-??.*.internal"}}"#, host("db-01.eu.internal"))
        )
        #expect(
            try !Self.allows(#"{"StringLike": {"jumpgate:RemoteHost": "db-??.*.internal"}}"#, host("db-1.eu.internal"))
        )
        #expect(try Self.allows(#"{"StringNotEquals": {"jumpgate:RemoteHost": "db.internal"}}"#, host("mq.internal")))
        #expect(try !Self.allows(#"{"StringNotLike": {"jumpgate:RemoteHost": "*.prod.*"}}"#, host("a.prod.b")))
        // An absent key: a positive operator is false, a negated one true, IfExists true.
        #expect(try !Self.allows(#"{"StringEquals": {"jumpgate:RemoteHost": "db"}}"#, [:]))
        #expect(try Self.allows(#"{"StringNotEquals": {"jumpgate:RemoteHost": "db"}}"#, [:]))
        #expect(try Self.allows(#"{"StringEqualsIfExists": {"jumpgate:RemoteHost": "db"}}"#, [:]))
        #expect(try !Self.allows(#"{"StringEqualsIfExists": {"jumpgate:RemoteHost": "db"}}"#, host("mq")))
    }

    @Test("numbers, dates and booleans")
    func numbersDatesBooleans() throws {
        let port = { (value: String) in ["jumpgate:RemotePort": [value]] }
        #expect(
            try Self.allows(
                #"{"NumericGreaterThanEquals": {"jumpgate:RemotePort": "5432"}, "NumericLessThanEquals": {"jumpgate:RemotePort": "5439"}}"#,
                port("5435")
            )
        )
        #expect(
            try !Self.allows(
                #"{"NumericGreaterThanEquals": {"jumpgate:RemotePort": "5432"}, "NumericLessThanEquals": {"jumpgate:RemotePort": "5439"}}"#,
                port("5440")
            )
        )
        #expect(try Self.allows(#"{"NumericEquals": {"jumpgate:RemotePort": [3306, 5432]}}"#, port("5432")))
        #expect(try Self.allows(#"{"NumericNotEquals": {"jumpgate:RemotePort": "22"}}"#, port("5432")))
        #expect(try !Self.allows(#"{"NumericLessThan": {"jumpgate:RemotePort": "1024"}}"#, port("not-a-number")))
        let now = { (value: String) in ["aws:CurrentTime": [value]] }
        #expect(
            try Self.allows(
                #"{"DateLessThan": {"aws:CurrentTime": "2026-12-31T23:59:59Z"}}"#,
                now("2026-12-02T16:35:43Z")
            )
        )
        #expect(
            try !Self.allows(
                #"{"DateGreaterThan": {"aws:CurrentTime": "2027-01-01"}}"#,
                now("2026-12-02T16:35:43.250Z")
            )
        )
        #expect(
            try Self.allows(
                #"{"DateGreaterThanEquals": {"aws:CurrentTime": "2026-12-02T17:35:43+01:00"}}"#,
                now("2026-12-02T16:35:43Z")
            )
        )
        #expect(try Self.allows(#"{"Bool": {"aws:SecureTransport": "true"}}"#, ["aws:SecureTransport": ["true"]]))
        #expect(try Self.allows(#"{"Bool": {"aws:SecureTransport": true}}"#, ["aws:SecureTransport": ["TRUE"]]))
        #expect(try !Self.allows(#"{"Bool": {"aws:SecureTransport": "true"}}"#, ["aws:SecureTransport": ["false"]]))
    }

    @Test("addresses: IpAddress and NotIpAddress, IPv4 and IPv6, and host names that match no block")
    func addresses() throws {
        let source = { (value: String) in ["aws:SourceIp": [value]] }
        #expect(
            try Self.allows(#"{"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}"#, source("10.1.2.3"))
        )
        #expect(
            try Self.allows(#"{"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}"#, source("2001:db8::1"))
        )
        #expect(try Self.allows(#"{"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#, source("::ffff:10.9.9.9")))
        #expect(try !Self.allows(#"{"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#, source("11.0.0.1")))
        #expect(try Self.allows(#"{"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#, source("11.0.0.1")))
        #expect(try Self.allows(#"{"IpAddress": {"aws:SourceIp": "192.0.2.7"}}"#, source("192.0.2.7")))
        // A name is not an address: in no block (the agent's allow-list, on resolved addresses, is the backstop).
        let host = ["jumpgate:RemoteHost": ["db.internal"]]
        #expect(try !Self.allows(#"{"IpAddress": {"jumpgate:RemoteHost": "0.0.0.0/0"}}"#, host))
        #expect(try Self.allows(#"{"NotIpAddress": {"jumpgate:RemoteHost": "10.0.0.0/8"}}"#, host))
    }

    @Test("Null, and the multi-valued qualifiers ForAnyValue and ForAllValues")
    func nullAndSets() throws {
        #expect(try Self.allows(#"{"Null": {"ssm:resourceTag/Owner": "true"}}"#, [:]))
        #expect(try !Self.allows(#"{"Null": {"ssm:resourceTag/Owner": "true"}}"#, ["ssm:resourceTag/Owner": ["a"]]))
        #expect(try Self.allows(#"{"Null": {"ssm:resourceTag/Owner": "false"}}"#, ["ssm:resourceTag/Owner": ["a"]]))
        let tags = { (values: [String]) in ["aws:TagKeys": values] }
        let any = #"{"ForAnyValue:StringEquals": {"aws:TagKeys": ["db", "mq"]}}"#
        let all = #"{"ForAllValues:StringEquals": {"aws:TagKeys": ["db", "mq"]}}"#
        #expect(try Self.allows(any, tags(["web", "db"])))
        #expect(try !Self.allows(any, tags(["web"])))
        #expect(try !Self.allows(any, [:]))
        #expect(try Self.allows(all, tags(["db", "mq"])))
        #expect(try !Self.allows(all, tags(["db", "web"])))
        #expect(try Self.allows(all, [:]))  // no values: all of none match
        #expect(
            try Self.allows(#"{"ForAllValues:StringNotEquals": {"aws:TagKeys": ["prod"]}}"#, tags(["db", "web"]))
        )
        #expect(
            try !Self.allows(#"{"ForAllValues:StringNotEquals": {"aws:TagKeys": ["prod"]}}"#, tags(["db", "prod"]))
        )
        #expect(
            try Self.allows(#"{"ForAnyValue:StringNotLike": {"aws:TagKeys": ["prod*"]}}"#, tags(["prod-1", "dev"]))
        )
    }
}
