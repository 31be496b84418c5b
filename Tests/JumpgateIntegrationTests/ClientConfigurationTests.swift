import Foundation
import JumpgateClient
import JumpgateWire
import Testing

/// Credentials, endpoint, region and CA found the way the AWS CLI (botocore) finds them.
@Suite("ClientConfiguration: the AWS tools' rules")
struct ClientConfigurationTests {
    /// Writes the two AWS files into a fresh directory and returns the environment pointing at them.
    static func files(credentials: String, config: String) throws -> [String: String] {
        let directory = NSTemporaryDirectory() + "jumpgate-config-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try credentials.write(toFile: directory + "/credentials", atomically: true, encoding: .utf8)
        try config.write(toFile: directory + "/config", atomically: true, encoding: .utf8)
        return [
            "HOME": directory, "AWS_SHARED_CREDENTIALS_FILE": directory + "/credentials",
            "AWS_CONFIG_FILE": directory + "/config",
        ]
    }

    static func resolve(profile: String? = nil, _ environment: [String: String]) throws -> ClientConfiguration {
        try ClientConfiguration.resolve(
            profile: profile,
            region: nil,
            endpointURL: nil,
            caFile: nil,
            environment: environment
        )
    }

    @Test("a profile from the config file gives endpoint, region and CA; the environment's CA wins")
    func profileFromConfig() throws {
        var environment = try Self.files(
            credentials: "[gw]\naws_access_key_id = AKID\naws_secret_access_key = SECRET\n",
            config: "[profile gw]\nregion = eu-west-3\nendpoint_url = https://gw:8443\nca_bundle = /gw/ca.pem\n"
        )
        environment["AWS_PROFILE"] = "gw"
        let configuration = try Self.resolve(environment)
        #expect(configuration.endpointURL == "https://gw:8443")
        #expect(configuration.region == "eu-west-3")
        #expect(configuration.caFile == "/gw/ca.pem")
        #expect(configuration.credentials.accessKeyID == "AKID")
        environment["AWS_CA_BUNDLE"] = "/env/ca.pem"
        #expect(try Self.resolve(environment).caFile == "/env/ca.pem")
        // Set to nothing counts as unset.
        environment["AWS_CA_BUNDLE"] = ""
        #expect(try Self.resolve(environment).caFile == "/gw/ca.pem")
    }

    @Test("one source gives the whole set; a key without its secret is an error, not a fall-through")
    func wholeSets() throws {
        var environment = try Self.files(
            credentials: "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = FILESECRET\n",
            config: "[default]\nendpoint_url = https://gw:8443\n"
        )
        #expect(try Self.resolve(environment).credentials.accessKeyID == "FILEKEY")
        environment["AWS_ACCESS_KEY_ID"] = "ENVKEY"
        #expect(throws: ClientError.self) { try Self.resolve(environment) }
        environment["AWS_SECRET_ACCESS_KEY"] = "ENVSECRET"
        #expect(try Self.resolve(environment).credentials.accessKeyID == "ENVKEY")
        // --profile names a profile: the environment's keys are not used.
        #expect(try Self.resolve(profile: "default", environment).credentials.accessKeyID == "FILEKEY")
    }

    @Test("a missing default profile is fine with environment keys; a missing named one is reported by name")
    func missingProfiles() throws {
        var environment = try Self.files(
            credentials: "[other]\naws_access_key_id = A\naws_secret_access_key = B\n",
            config: "[sso-session corp]\nsso_region = us-east-1\n[services local]\nssm =\n"
        )
        environment["AWS_ENDPOINT_URL_SSM"] = "https://gw:8443"
        environment["AWS_ACCESS_KEY_ID"] = "ENVKEY"
        environment["AWS_SECRET_ACCESS_KEY"] = "ENVSECRET"
        environment["AWS_PROFILE"] = "default"
        #expect(try Self.resolve(environment).credentials.accessKeyID == "ENVKEY")
        environment["AWS_PROFILE"] = "typo"
        do {
            _ = try Self.resolve(environment)
            Issue.record("a missing profile resolved")
        } catch let error as ClientError {
            #expect(error.description.contains("There is no profile 'typo'"))
            #expect(error.description.contains("hold the profiles other."), "\(error)")
        }
    }
}
