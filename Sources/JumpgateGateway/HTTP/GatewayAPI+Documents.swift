import JumpgateAccess
import JumpgateWire

/// Session documents (docs/SESSIONS.md, "Session documents"): CreateDocument, UpdateDocument,
/// UpdateDocumentDefaultVersion, DescribeDocument, GetDocument, ListDocuments and DeleteDocument, for
/// documents of type Session in JSON. Each is a policy action on the document's ARN, and audited as every
/// API call is.
extension GatewayAPI {
    static let documentOperations: Set<String> = [
        "CreateDocument", "UpdateDocument", "UpdateDocumentDefaultVersion", "DescribeDocument", "GetDocument",
        "ListDocuments", "DeleteDocument",
    ]

    func handleDocuments(operation: String, input: JSONValue, call: inout APICall) throws(APIError) -> Answer {
        let action = "ssm:" + operation
        if operation == "ListDocuments" {
            try self.authorizeListing(&call, action)
            return .read(try self.listDocuments(input, call: call))
        }
        let name = try Self.string(input, "Name", maxLength: 128)
        try self.authorize(&call, action, [RequestedResource(self.resources.document(name))])
        let version = input["DocumentVersion"]?.stringValue
        switch operation {
        case "CreateDocument":
            try Self.checkSessionDocument(input)
            let content = try Self.string(input, "Content", maxLength: SessionDocumentContent.maximumSize)
            let found = try self.state.createDocument(name: name, content: content)
            return .now(["DocumentDescription": self.describe(found)])
        case "UpdateDocument":
            try Self.checkSessionDocument(input)
            let content = try Self.string(input, "Content", maxLength: SessionDocumentContent.maximumSize)
            let found = try self.state.updateDocument(name: name, content: content, expected: version)
            return .now(["DocumentDescription": self.describe(found)])
        case "UpdateDocumentDefaultVersion":
            let chosen = try self.state.setDefaultDocumentVersion(
                name: name,
                version: try Self.string(input, "DocumentVersion", maxLength: 20)
            )
            return .now(["Description": ["Name": .string(name), "DefaultVersion": .string("\(chosen)")]])
        case "DescribeDocument":
            return .read(["Document": self.describe(try self.state.document(name, version: version))])
        case "GetDocument":
            let found = try self.state.document(name, version: version)
            return .read([
                "Name": .string(found.name), "DocumentVersion": .string("\(found.version)"), "Status": "Active",
                "Content": .string(found.content), "DocumentType": "Session", "DocumentFormat": "JSON",
                "CreatedDate": .integer(found.createdEpoch),
            ])
        case "DeleteDocument":
            if version != nil {
                throw APIError(
                    400,
                    "InvalidDocumentOperation",
                    "Jumpgate deletes a document with all its versions: give no DocumentVersion."
                )
            }
            try self.state.deleteDocument(name: name)
            return .now([:])
        default:
            throw APIError(400, "UnknownOperationException", "Unknown operation \(operation).")
        }
    }

    /// Jumpgate holds Session documents in JSON; other types and formats are refused with the reason.
    static func checkSessionDocument(_ input: JSONValue) throws(APIError) {
        if let type = input["DocumentType"]?.stringValue, type != "Session" {
            throw APIError(
                400,
                "InvalidDocumentType",
                "Jumpgate holds Session documents only (DocumentType Session), not \(type.prefix(40))."
            )
        }
        if let format = input["DocumentFormat"]?.stringValue, format != "JSON" {
            throw APIError(
                400,
                "UnsupportedDocumentFormat",
                "Jumpgate reads documents in JSON, not \(format.prefix(20)): convert it (for example with yq -o json)."
            )
        }
    }

    func describe(_ found: DocumentCatalog.Found) -> JSONValue {
        var parameters: [JSONValue] = []
        for parameter in found.parsed.parameters {
            var members: [(key: String, value: JSONValue)] = [
                ("Name", .string(parameter.name)), ("Type", "String"), ("Description", .string(parameter.description)),
            ]
            if let value = parameter.defaultValue { members.append(("DefaultValue", .string(value))) }
            parameters.append(.object(members))
        }
        return [
            "Name": .string(found.name), "Hash": .string(SigV4.hexSHA256(Array(found.content.utf8))),
            "HashType": "Sha256", "DocumentVersion": .string("\(found.version)"),
            "LatestVersion": .string("\(found.latestVersion)"), "DefaultVersion": .string("\(found.defaultVersion)"),
            "Status": "Active", "CreatedDate": .integer(found.createdEpoch),
            "Owner": .string(found.isBuiltIn ? "Amazon" : self.resources.account), "DocumentType": "Session",
            "SchemaVersion": "1.0", "DocumentFormat": "JSON", "PlatformTypes": ["Linux", "MacOS"],
            "Description": .string(found.parsed.description), "Parameters": .array(parameters),
        ]
    }

    /// Every document the caller may see, narrowed by `Filters` (Owner Self/Amazon, DocumentType, Name) or
    /// `DocumentFilterList` (Owner, DocumentType, Name), as the AWS CLI sends them.
    func listDocuments(_ input: JSONValue, call: APICall) throws(APIError) -> JSONValue {
        var filters: [(key: String, values: [String])] = []
        for filter in input["Filters"]?.arrayValue ?? [] {
            let key = filter["Key"]?.stringValue ?? ""
            filters.append((key, filter["Values"]?.arrayValue?.compactMap(\.stringValue) ?? []))
        }
        for filter in input["DocumentFilterList"]?.arrayValue ?? [] {
            filters.append((filter["key"]?.stringValue ?? "", [filter["value"]?.stringValue ?? ""]))
        }
        let catalog = self.state.documentCatalog
        var identifiers: [JSONValue] = []
        for name in catalog.names {
            guard let found = try? catalog.find(name) else { continue }
            let owner = found.isBuiltIn ? "Amazon" : "Self"
            let keep = filters.allSatisfy { filter in
                switch filter.key {
                case "Owner":
                    return filter.values.contains(owner)
                        || filter.values.contains(self.resources.account) && !found.isBuiltIn
                case "DocumentType": return filter.values.contains("Session")
                case "Name": return filter.values.contains(name)
                case "SearchKeyword": return filter.values.contains { name.lowercased().contains($0.lowercased()) }
                default: return true
                }
            }
            guard keep, self.allows(call, "ssm:ListDocuments", RequestedResource(self.resources.document(name))) else {
                continue
            }
            identifiers.append([
                "Name": .string(name), "Owner": .string(found.isBuiltIn ? "Amazon" : self.resources.account),
                "DocumentVersion": .string("\(found.version)"), "DocumentType": "Session", "SchemaVersion": "1.0",
                "DocumentFormat": "JSON", "PlatformTypes": ["Linux", "MacOS"],
                "CreatedDate": .integer(found.createdEpoch),
            ])
        }
        return ["DocumentIdentifiers": .array(identifiers)]
    }
}
