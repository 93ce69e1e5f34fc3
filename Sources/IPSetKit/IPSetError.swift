/// A failed libipset call: the restore line that failed (when the failure belongs to one) and
/// libipset's message.
///
/// `description` reads `ipset restore line 3 (add picket-x 10.0.0.1): The set with the given
/// name does not exist`, or `ipset: <message>` when no line is involved.
public struct IPSetError: Error, CustomStringConvertible {
    /// The 1-based line of the restore text that failed, counting comment and blank lines;
    /// `nil` when the failure belongs to no line (opening netlink, saving).
    public var line: Int?
    /// The text of `line`, without its line break; `nil` when `line` is.
    public var lineText: String?
    /// libipset's message, without its "Error in line N: " prefix and trailing line break.
    public var message: String

    /// An error with the given parts.
    public init(line: Int? = nil, lineText: String? = nil, message: String) {
        self.line = line
        self.lineText = lineText
        self.message = message
    }

    /// `ipset restore line N (text): message`, or `ipset: message`.
    public var description: String {
        guard let line else { return "ipset: \(message)" }
        return "ipset restore line \(line) (\(lineText ?? "")): \(message)"
    }
}
