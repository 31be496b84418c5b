import JumpgateAccess
import JumpgateWire

/// Tags on managed instances: AddTagsToResource, RemoveTagsFromResource, ListTagsForResource.
extension GatewayAPI {
    /// AWS's `[{"Key": ..., "Value": ...}]`; nil or absent is no tags.
    static func tagList(_ value: JSONValue?) throws(APIError) -> [String: String] {
        guard let value, !value.isNull else { return [:] }
        guard let items = value.arrayValue else {
            throw APIError(400, "ValidationException", "Tags must be a list of {\"Key\": ..., \"Value\": ...}.")
        }
        var tags: [String: String] = [:]
        for item in items {
            guard let key = item["Key"]?.stringValue, let value = item["Value"]?.stringValue ?? Optional("") else {
                throw APIError(400, "ValidationException", "Each tag needs a Key (and a Value).")
            }
            tags[key] = value
        }
        try GatewayState.validate(tags: tags)
        return tags
    }

    static func json(tags: [String: String]) -> JSONValue {
        .array(tags.sorted { $0.key < $1.key }.map { ["Key": .string($0.key), "Value": .string($0.value)] })
    }

    func tags(operation: String, _ input: JSONValue, call: inout APICall) throws(APIError) -> Answer {
        let type = try Self.string(input, "ResourceType", maxLength: 64)
        guard type == "ManagedInstance" else {
            throw APIError(
                400,
                "InvalidResourceType",
                "Jumpgate tags managed instances only: use --resource-type ManagedInstance."
            )
        }
        let id = try Self.string(input, "ResourceId", maxLength: 64)
        call.target = id
        try self.authorize(&call, "ssm:" + operation, [self.instanceResource(id)])
        guard self.state.instance(id: id) != nil else {
            throw APIError(400, "InvalidResourceId", "Managed instance \(id) does not exist.")
        }
        switch operation {
        case "AddTagsToResource":
            let add = try Self.tagList(input["Tags"])
            guard !add.isEmpty else { throw APIError(400, "ValidationException", "Tags must name at least one tag.") }
            _ = try self.state.changeTags(instanceID: id, add: add, remove: [])
            return .applied([:])
        case "RemoveTagsFromResource":
            guard let keys = input["TagKeys"]?.arrayValue?.compactMap(\.stringValue), !keys.isEmpty else {
                throw APIError(400, "ValidationException", "TagKeys must be a list of tag keys.")
            }
            _ = try self.state.changeTags(instanceID: id, add: [:], remove: keys)
            return .applied([:])
        default:
            return .read(["TagList": Self.json(tags: self.state.instance(id: id)?.tags ?? [:])])
        }
    }
}
