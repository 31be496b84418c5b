/// One uploader's turn-taking (the connection records' and the recordings'): requests within the
/// gathering second make one upload, at most one upload runs, and a request while it runs makes it run
/// once more. Kept under the uploader's lock.
struct UploadSlot: Sendable {
    private(set) var inFlight = false
    private var again = false
    private var scheduled = false

    /// A gathered upload is asked for: true if the caller schedules it (none is scheduled yet).
    mutating func schedule() -> Bool {
        defer { self.scheduled = true }
        return !self.scheduled
    }

    /// The gathering time passed: the next request schedules again.
    mutating func gathered() { self.scheduled = false }

    /// An upload is asked for: true if it starts now; false if one runs (which then runs once more).
    mutating func begin() -> Bool {
        if self.inFlight {
            self.again = true
            return false
        }
        self.inFlight = true
        self.again = false
        return true
    }

    /// Takes the slot only if it is free (nothing is remembered otherwise).
    mutating func take() -> Bool {
        guard !self.inFlight else { return false }
        self.inFlight = true
        self.again = false
        return true
    }

    /// The upload ended: whether it must run once more.
    mutating func end() -> Bool {
        self.inFlight = false
        defer { self.again = false }
        return self.again
    }
}
