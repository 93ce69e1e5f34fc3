import ArgumentParser

/// A duration written as Go's time.ParseDuration reads it, as Kubernetes components take them:
/// `500ms`, `5s`, `5m`, `1h30m`, `1.5h`, `0`. Units: ns, us (µs), ms, s, m, h.
struct GoDuration: ExpressibleByArgument, CustomStringConvertible, Sendable {
    /// The duration.
    var duration: Duration
    /// As written.
    var description: String

    init(_ duration: Duration, written: String) {
        self.duration = duration
        description = written
    }

    init?(argument: String) {
        guard let duration = GoDuration.parse(argument) else { return nil }
        self.init(duration, written: argument)
    }

    static var defaultCompletionKind: CompletionKind { .default }

    /// Parses a Go duration; nil when it is not one (negative durations are refused too).
    static func parse(_ text: String) -> Duration? {
        if text == "0" { return .zero }
        var rest = Substring(text)
        guard !rest.isEmpty else { return nil }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, number.filter({ $0 == "." }).count <= 1, number != ".", let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { !($0.isNumber || $0 == ".") }
            rest = rest.dropFirst(unit.count)
            let scale: Double
            switch unit {
            case "ns": scale = 1e-9
            case "us", "µs", "μs": scale = 1e-6
            case "ms": scale = 1e-3
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            default: return nil
            }
            total += value * scale
        }
        guard total.isFinite, total < 1e10 else { return nil }
        return .nanoseconds(Int64((total * 1e9).rounded()))
    }
}
