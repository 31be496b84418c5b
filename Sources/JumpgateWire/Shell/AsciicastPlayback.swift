/// Reads an asciicast v2 recording and plans its playback: what to write to the terminal, and how long to
/// wait before each write. Pure; `jumpgate sessions replay` carries the plan out.
public struct AsciicastPlayback: Sendable {
    public struct Header: Sendable, Equatable {
        public var width: Int
        public var height: Int
        public var timestamp: Int64
        public var title: String

        public init(width: Int, height: Int, timestamp: Int64, title: String) {
            self.width = width
            self.height = height
            self.timestamp = timestamp
            self.title = title
        }
    }

    /// One write: wait `delayMicroseconds` after the previous one, then write `text`.
    public struct Step: Sendable, Equatable {
        public var delayMicroseconds: Int64
        public var text: String
    }

    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public let header: Header
    /// The output events (`"o"`), in order, with their times in microseconds.
    public let output: [(microseconds: Int64, text: String)]
    /// How many markers (`"m"`) the recording holds, and the last one's text (why it ended or was cut).
    public let markers: [String]
    /// What the client typed (`"i"` events), joined.
    public let input: String

    /// Event times beyond this (about 31 years) are refused.
    static let maximumSeconds = 1e9
    /// ``maximumSeconds`` in microseconds, the latest time an event may carry.
    public static let maximumMicroseconds = Int64(maximumSeconds) * 1_000_000

    /// Parses `text`: a v2 header, then event lines; blank lines are skipped, anything else is refused
    /// with the line's number.
    public init(parsing text: String) throws(Problem) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first, let json = try? JSONValue(parsing: String(first)),
            json["version"]?.int64Value == 2, let width = json["width"]?.int64Value,
            let height = json["height"]?.int64Value
        else {
            throw Problem(description: "not an asciicast v2 recording: its first line is not a version 2 header")
        }
        self.header = Header(
            width: Int(width),
            height: Int(height),
            timestamp: json["timestamp"]?.int64Value ?? 0,
            title: json["title"]?.stringValue ?? ""
        )
        var output: [(Int64, String)] = []
        var markers: [String] = []
        var input = ""
        var last: Int64 = 0
        for (index, line) in lines.enumerated().dropFirst() where !line.isEmpty {
            guard let event = (try? JSONValue(parsing: String(line)))?.arrayValue, event.count == 3,
                let time = event[0].doubleValue, (0...Self.maximumSeconds).contains(time),
                let code = event[1].stringValue, let data = event[2].stringValue
            else {
                // A last line cut short (an agent that died mid-write) ends the recording; anything else
                // wrong is refused.
                if index == lines.count - 1 { break }
                throw Problem(description: "line \(index + 1) of the recording is not an event")
            }
            // Times never go back: a recording's clock step is played as no wait.
            let microseconds = max(last, Int64((time * 1_000_000).rounded()))
            last = microseconds
            switch code {
            case "o": output.append((microseconds, data))
            case "m": markers.append(data)
            case "i": input += data
            default: break  // resizes: not played
            }
        }
        self.output = output
        self.markers = markers
        self.input = input
    }

    /// The longest wait ``steps(speed:idleLimitMicroseconds:)`` gives: a year.
    static let longestWaitMicroseconds = 365.0 * 86_400 * 1_000_000

    /// The writes at `speed` times real time, each wait at most `idleLimit` seconds (nil: as recorded).
    public func steps(speed: Double, idleLimitMicroseconds: Int64?) -> [Step] {
        var steps: [Step] = []
        steps.reserveCapacity(self.output.count)
        var previous: Int64 = 0
        for (time, text) in self.output {
            var delay = time - previous
            previous = time
            if let limit = idleLimitMicroseconds { delay = min(delay, limit) }
            // At most a year per wait: a very slow speed on a long pause would not fit Int64 (and trapped).
            let scaled = min((Double(delay) / max(speed, 0.000_001)).rounded(), Self.longestWaitMicroseconds)
            steps.append(Step(delayMicroseconds: Int64(scaled), text: text))
        }
        return steps
    }
}
