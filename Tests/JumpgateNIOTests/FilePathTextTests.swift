import Foundation
import Testing

@testable import JumpgateNIO

/// The Foundation-free path and time helpers agree with the Foundation calls they replace.
@Suite struct FilePathTextTests {
    @Test func parent() {
        let expected = [
            "": "", "/": "/", "//": "/", "a": "", "a/": "", "/a": "/", "/a/": "/", "/a/b": "/a", "/a/b/": "/a",
            "a/b": "a", "a/b/c": "a/b", "/a//b": "/a", "/a/b//": "/a", "./a": ".", "../a": "..",
            "/srv/jumpgate/credentials": "/srv/jumpgate", "credentials": "",
        ]
        for (path, parent) in expected {
            #expect(FilePathText.parent(of: path) == parent, "\(path.debugDescription)")
        }
        // As NSString has it for ordinary paths (some unusual ones, with doubled or trailing slashes, trap
        // in swift-corelibs-foundation's version, which is one reason it is gone).
        for path in ["/a/b", "a/b/c", "/srv/jumpgate/credentials", "credentials", "/a"] {
            #expect(FilePathText.parent(of: path) == (path as NSString).deletingLastPathComponent, "\(path)")
        }
    }

    @Test func absoluteKeepsDotDotForTheKernel() {
        let cwd = FileManager.default.currentDirectoryPath
        #expect(FilePathText.absolute("/a/./b/../c//d/") == "/a/b/../c/d")
        #expect(FilePathText.absolute("/") == "/")
        #expect(FilePathText.absolute("x/./y") == (cwd == "/" ? "/x/y" : cwd + "/x/y"))
        #expect(FilePathText.absolute("/srv/data") == "/srv/data")
    }

    @Test func isDirectory() throws {
        let directory = NSTemporaryDirectory() + "jumpgate-path-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(FileManager.default.createFile(atPath: directory + "/file", contents: Data("x".utf8)))
        #expect(FilePathText.isDirectory(directory) == true)
        #expect(FilePathText.isDirectory(directory + "/file") == false)
        #expect(FilePathText.isDirectory(directory + "/missing") == nil)
    }

    @Test func homeDirectory() {
        #expect(FilePathText.homeDirectory(environment: ["HOME": "/home/someone"]) == "/home/someone")
        // Without HOME, the password database's entry for this user, as NSHomeDirectory gives it.
        let entry = getpwuid(getuid()).map { String(cString: $0.pointee.pw_dir) }
        #expect(FilePathText.homeDirectory(environment: [:]) == entry)
    }

    @Test func iso8601MatchesFoundation() {
        let seed = UInt64(1_733_390_000)
        print("FilePathTextTests.iso8601MatchesFoundation seed \(seed)")
        var state = seed
        let plain = ISO8601DateFormatter()
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for _ in 0..<500 {
            // SplitMix64 step, inline: a seeded epoch second between 2000 and 2100.
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            let epoch = 946_684_800 + Int64(z % 3_155_760_000)
            let date = Date(timeIntervalSince1970: TimeInterval(epoch))
            #expect(WallClock.parseISO8601(plain.string(from: date)) == epoch)
            let withMilliseconds = Date(timeIntervalSince1970: TimeInterval(epoch) + 0.25)
            #expect(WallClock.parseISO8601(fractional.string(from: withMilliseconds)) == epoch)
            #expect(WallClock.iso8601(epochSeconds: epoch) == plain.string(from: date))
        }
        #expect(WallClock.parseISO8601("2026-12-31") == 1_798_675_200)
        #expect(WallClock.parseISO8601("2026-12-31T18:00:00+02:00") == 1_798_732_800)
        #expect(WallClock.parseISO8601("2024-02-29T23:59:59Z") == 1_709_251_199)  // a leap day
        #expect(WallClock.parseISO8601("2000-02-29") == 951_782_400)  // divisible by 400: a leap year
        #expect(WallClock.parseISO8601("1969-12-31T23:59:59Z") == -1)
        for sameTime in ["2026-12-31T18:00:00+0200", "2026-12-31T18:00:00+02", "2026-12-31T14:00:00-02:00"] {
            #expect(WallClock.parseISO8601(sameTime) == 1_798_732_800, "\(sameTime)")
        }
        #expect(WallClock.parseISO8601("2026-12-31T16:30:00-00:30") == 1_798_736_400)
        // RFC 3339's other spellings: a space or lower case, a comma before the fraction, no seconds.
        for sameTime in [
            "2026-12-31 16:00:00Z", "2026-12-31t16:00:00z", "2026-12-31T16:00:00,750Z", "2026-12-31T16:00Z",
            "2026-12-31 18:00+02:00", "2027-01-01T01:00:00+09:00",
        ] {
            #expect(WallClock.parseISO8601(sameTime) == 1_798_732_800, "\(sameTime)")
        }
        #expect(WallClock.parseISO8601("1900-03-01") == -25_508 * 86_400)
        // Fields out of range are refused, not rolled over (FoundationEssentials alone takes 25:00 as the next
        // day's 01:00, as ISO8601DateFormatter did not).
        for bad in [
            "", "2h", "yesterday", "2026-13-01", "1798675200", "2026-12-31T25:00:00Z", "2026-12-31T24:00:00Z",
            "2026-12-31T23:60:00Z", "2026-12-31T23:59:60Z", "2026-02-29", "2026-02-30T00:00:00Z", "2026-04-31",
            "2026-00-10", "2026-12-00", "2026-12-31T18:00:00+25:00", "2026-12-31T18:00:00+02:61",
            // Shapes FoundationEssentials took (one-digit fields; no zone, read as midnight), and broken
            // zones, separators and fractions.
            "2026-2-30", "2026-4-31", "2026-12-31T18:00:00", "2026-12-31T18:00", "2026-12-31T18:00:00.Z",
            "2026-12-31T18:00:00+2", "2026-12-31T18:00:00+02:0", "2026-12-31T18:00:00ZZ", "2026-12-31T18Z",
            "2026-12-31_18:00:00Z", "02026-12-31", "2026-12-31Z", "1900-02-29", "2026-12-31T18:00:.5Z",
        ] {
            #expect(WallClock.parseISO8601(bad) == nil, "\(bad)")
        }
        #expect(fractional.date(from: WallClock.iso8601Now()) != nil)
    }
}
