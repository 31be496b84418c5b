import ArgumentParser
import FoundationEssentials
import JumpgateClient
import JumpgateNIO
import JumpgateWire

/// `jumpgate sessions get-recording` and `sessions replay`: a shell or command session's recording, as the
/// gateway stores it (asciicast v2). Reading one is its own action (`jumpgate:GetSessionRecording`), and
/// the gateway audits every read.
enum SessionRecordings {
    /// The recording's bytes and what the gateway says of it.
    static func fetch(
        _ gateway: GatewayOptions,
        _ sessionID: String
    ) async throws -> (bytes: [UInt8], answer: JSONValue) {
        try await gateway.client().sessionRecording(sessionID)
    }

    /// What a user should know about a recording that is not whole.
    static func caveat(_ answer: JSONValue) -> String? {
        if answer["Truncated"]?.boolValue == true {
            return "The recording reached its size limit (jumpgate server --recording-max-mib): its end is missing."
        }
        if answer["Complete"]?.boolValue != true {
            return "The recording is not complete yet: the session goes on, or its agent has not delivered the rest."
        }
        return nil
    }
}

struct SessionsGetRecordingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get-recording",
        abstract: "Write a shell or command session's recording to a file (asciicast v2, for asciinema).",
        discussion: "Needs the jumpgate:GetSessionRecording permission on the session; every read is audited."
    )
    @OptionGroup var gateway: GatewayOptions
    @Argument(help: ArgumentHelp("The session id.", valueName: "session-id")) var sessionID: String
    @Option(name: .shortAndLong, help: "Where to write it ('-': standard output; default: SESSION-ID.cast).")
    var output: String?
    @Flag(name: .long, help: "Replace the file if it exists.")
    var force = false

    func run() async throws {
        let path = self.output ?? "\(self.sessionID).cast"
        if path != "-", !self.force, FileManager.default.fileExists(atPath: path) {
            throw CommandFailure("\(path) exists; give --force to replace it, or --output another file.")
        }
        let (bytes, answer) = try await SessionRecordings.fetch(self.gateway, self.sessionID)
        if path == "-" {
            StandardStream.output.write(bytes: bytes)
        } else {
            guard
                FileManager.default.createFile(
                    atPath: path,
                    contents: Data(bytes),
                    attributes: [.posixPermissions: 0o600]
                )
            else { throw CommandFailure("\(path) cannot be written.") }
        }
        var note = path == "-" ? "" : "Wrote \(ByteCount.text(Int64(bytes.count))) to \(path)."
        if let caveat = SessionRecordings.caveat(answer) { note += (note.isEmpty ? "" : " ") + caveat }
        if !note.isEmpty { StandardStream.error.write(note + "\n") }
    }
}

struct SessionsReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Play a shell or command session's recording in this terminal, at real speed or faster.",
        discussion:
            "Plays what the session's terminal showed (its input is never played). Use a terminal of the recorded size (the session's start says it) to see the same screen. Needs jumpgate:GetSessionRecording on the session; every read is audited."
    )
    @OptionGroup var gateway: GatewayOptions
    @Argument(help: ArgumentHelp("The session id.", valueName: "session-id")) var sessionID: String?
    @Option(name: .long, help: "Play a .cast file instead of asking the gateway.")
    var file: String?
    @Option(name: .long, help: "How many times real speed (2: twice as fast).")
    var speed: Double = 1
    @Option(name: .long, help: "Wait at most this many seconds between two writes (2, 0.5 ...; default: as recorded).")
    var idleLimit: Double?

    func validate() throws {
        guard (self.sessionID == nil) != (self.file == nil) else {
            throw ValidationError("Give a session id or --file, one of them.")
        }
        guard self.speed > 0, self.speed <= 1_000_000 else { throw ValidationError("--speed must be above 0.") }
        if let limit = self.idleLimit, !(0...86_400).contains(limit) {
            throw ValidationError("--idle-limit must be from 0 to 86400 seconds.")
        }
    }

    func run() async throws {
        let text: String
        var caveat: String?
        if let file = self.file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CommandFailure("\(file) cannot be read.")
            }
            text = String(decoding: data, as: UTF8.self)
        } else {
            let (bytes, answer) = try await SessionRecordings.fetch(self.gateway, self.sessionID ?? "")
            text = String(decoding: bytes, as: UTF8.self)
            caveat = SessionRecordings.caveat(answer)
        }
        let playback: AsciicastPlayback
        do {
            playback = try AsciicastPlayback(parsing: text)
        } catch {
            throw CommandFailure("The recording cannot be played: \(error)")
        }
        let limit = self.idleLimit.map { Int64($0 * 1_000_000) }
        // Each write at its time from the start, so a long replay does not fall behind by the writes' time.
        let clock = ContinuousClock()
        var due = clock.now
        for step in playback.steps(speed: self.speed, idleLimitMicroseconds: limit) {
            due = due.advanced(by: .microseconds(step.delayMicroseconds))
            if due > clock.now { try await clock.sleep(until: due) }
            StandardStream.output.write(step.text)
        }
        if let caveat { StandardStream.error.write("\r\n" + caveat + "\r\n") }
    }
}
