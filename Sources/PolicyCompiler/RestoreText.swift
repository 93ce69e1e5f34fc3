/// The only way text that came from a cluster (policy, namespace and pod names, label keys and
/// values, node names) enters a restore file: squeezed into a safe alphabet first, whatever the
/// validator let through. Names never reach the kernel in any other form: chain and set names
/// are hashes, members are typed addresses and ports.
public enum RestoreText {
    /// The kernel keeps at most this many bytes of a rule comment (XT_MAX_COMMENT_LEN - 1).
    public static let commentLimit = 255

    /// Whether `byte` may appear in rendered text as it is: printable ASCII other than the
    /// double quote, the single quote and the backslash. Quotes and backslashes are left out
    /// because iptables-save prints them escaped (`\'`), which would break the rule-for-rule
    /// comparison of compiled and saved text, and because they are what quoting is made of.
    @inline(__always)
    public static func isSafe(_ byte: UInt8) -> Bool {
        byte >= 0x20 && byte < 0x7F && byte != 0x22 && byte != 0x27 && byte != 0x5C
    }

    /// `text` with every Unicode scalar outside the safe alphabet replaced by `?`: one line of
    /// printable ASCII, no quote, no backslash. Safe text is returned unchanged.
    public static func safe(_ text: String) -> String {
        guard !text.utf8.allSatisfy(isSafe) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            out.append(scalar.isASCII && isSafe(UInt8(scalar.value)) ? scalar : "?")
        }
        return String(out)
    }

    /// A rule comment: `safe(text)` cut to `commentLimit` bytes (one byte per character, as safe
    /// text is ASCII), so that what the kernel keeps is what was compiled.
    public static func comment(_ text: String) -> String {
        let clean = safe(text)
        return clean.utf8.count <= commentLimit ? clean : String(decoding: clean.utf8.prefix(commentLimit), as: UTF8.self)
    }
}
