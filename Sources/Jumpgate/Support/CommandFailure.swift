/// An error for the person at the terminal: what happened, then what to do. ArgumentParser prints it as
/// `Error: <description>` and exits 1, the one error style of every command (its own parse errors use it
/// too). Library errors never reach the user as they are: they are explained first (`FailureText`).
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
