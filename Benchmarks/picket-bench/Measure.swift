import Foundation

// Small measurement and formatting helpers: medians of durations, peak RSS from /proc, and
// locale-independent number formatting for the report.

/// The median of `samples` (the mean of the two middle ones for an even count).
func median(_ samples: [Duration]) -> Duration {
    precondition(!samples.isEmpty, "median of no samples")
    let sorted = samples.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

extension Duration {
    /// The duration in milliseconds.
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1_000 + Double(attoseconds) / 1e15
    }
}

/// Peak resident set size of this process, from `VmHWM` in /proc/self/status.
enum PeakRSS {
    /// VmHWM in bytes, or nil when /proc is not readable.
    static func bytes() -> Int? {
        let status: String
        do {
            status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        } catch {
            return nil
        }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kib = Int(fields[1]) else { return nil }
            return kib * 1024
        }
        return nil
    }

    /// Resets the peak to the current RSS (`echo 5 > /proc/self/clear_refs`, Linux 4.0+), so
    /// each cluster size reports its own peak. Returns the reason when it cannot.
    static func reset() -> String? {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else {
            return "/proc/self/clear_refs is not writable"
        }
        do {
            try handle.write(contentsOf: Data("5".utf8))
            try handle.close()
        } catch {
            return "writing /proc/self/clear_refs failed: \(error)"
        }
        return nil
    }
}

/// Locale-independent formatting for the report.
enum Format {
    /// `12345678` -> `12,345,678`.
    static func count(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return n < 0 ? "-" + out : out
    }

    /// Milliseconds with a precision that suits the magnitude: `0.42 ms`, `12.3 ms`, `230 ms`.
    static func ms(_ d: Duration) -> String {
        let v = d.milliseconds
        if v < 10 { return String(format: "%.2f ms", v) }
        if v < 100 { return String(format: "%.1f ms", v) }
        return String(format: "%.0f ms", v)
    }

    /// Bytes as `812 KB`, `3.4 MB` (powers of 1000, as `ls --si`).
    static func bytes(_ n: Int) -> String {
        let v = Double(n)
        if v < 1e3 { return "\(n) B" }
        if v < 1e6 { return String(format: "%.0f KB", v / 1e3) }
        if v < 1e9 { return String(format: "%.1f MB", v / 1e6) }
        return String(format: "%.2f GB", v / 1e9)
    }

    /// Bytes as `95 MiB` (RSS is conventionally binary).
    static func mebibytes(_ n: Int) -> String {
        String(format: "%.0f MiB", Double(n) / 1_048_576)
    }

    /// A share as `4.9%`.
    static func percent(_ part: Duration, of whole: Duration) -> String {
        String(format: "%.1f%%", part.milliseconds / whole.milliseconds * 100)
    }
}
