/// `host:port` as people and logs read it, with brackets around an IPv6 host (`[::1]:41361`).
public enum HostPort {
    public static func text(_ host: String, _ port: Int) -> String {
        Self.text(host, String(port))
    }

    public static func text(_ host: String, _ port: String) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
