import JumpgateWire
import Testing

@Suite("Agent allow-list")
struct AllowListTests {
    func v4(_ s: String) -> [UInt8] { IPAddressBytes.parse(s)! }

    @Test("patterns: addresses, CIDR, names, wildcard suffixes, port ranges; deny wins")
    func patterns() throws {
        let list = try AllowList(
            allow: ["198.18.0.0/15:3306", "*.vpc.internal:443", "db.example:5432-5433", "[2001:db8::]/32:*"],
            deny: ["198.18.9.9:*"]
        )
        #expect(list.refusal(name: "x", address: v4("198.19.1.2"), port: 3306) == nil)
        #expect(list.refusal(name: "x", address: v4("198.19.1.2"), port: 3307) != nil)
        #expect(list.refusal(name: "x", address: v4("198.18.9.9"), port: 3306)?.contains("denied") == true)
        #expect(list.refusal(name: "sqs.vpc.internal", address: v4("10.0.0.5"), port: 443) == nil)
        #expect(list.refusal(name: "vpc.internal.evil", address: v4("10.0.0.5"), port: 443) != nil)
        #expect(list.refusal(name: "DB.example", address: v4("10.0.0.6"), port: 5433) == nil)
        #expect(list.refusal(name: "x", address: IPAddressBytes.parse("2001:db8::7")!, port: 80) == nil)
    }

    @Test("metadata and link-local addresses are refused in every spelling, even with '*:*'")
    func metadata() throws {
        let everything = try AllowList(allow: ["*:*"])
        for address in ["169.254.169.254", "::ffff:169.254.169.254", "169.254.1.1", "fe80::1", "fd00:ec2::254"] {
            #expect(
                everything.refusal(name: address, address: IPAddressBytes.parse(address)!, port: 80)?.contains(
                    "forbidden"
                ) == true
            )
        }
        // "2852039166" is 169.254.169.254 as one number: the agent checks what the resolver returns.
        #expect(everything.refusal(name: "2852039166", address: [169, 254, 169, 254], port: 80) != nil)
        #expect(everything.refusal(name: "db", address: v4("10.1.2.3"), port: 3306) == nil)
    }

    @Test("loopback passes only when named explicitly")
    func loopback() throws {
        #expect(
            try AllowList(allow: ["*:*"]).refusal(name: "localhost", address: v4("127.0.0.1"), port: 22)?.contains(
                "loopback"
            ) == true
        )
        #expect(
            try AllowList(allow: ["127.0.0.1:*"]).refusal(name: "localhost", address: v4("127.0.0.1"), port: 22) == nil
        )
        #expect(
            try AllowList(allow: ["localhost:22"]).refusal(name: "localhost", address: v4("127.0.0.1"), port: 22) == nil
        )
        #expect(
            try AllowList(allow: ["127.0.0.0/8:1-100"]).refusal(
                name: "x",
                address: IPAddressBytes.parse("::ffff:127.0.0.9")!,
                port: 22
            ) == nil
        )
    }

    @Test(
        "bad patterns are clear errors",
        arguments: ["nohostport", "1.2.3.4:0", "1.2.3.4:70000", "1.2.3.4:9-3", "1.2.3.0/33:1", "a*b:1", ":80"]
    )
    func badPatterns(text: String) {
        #expect(throws: WireError.self) { try AllowList(allow: [text]) }
    }
}
