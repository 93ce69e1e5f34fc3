import KubeModel

/// Builds restore text a line at a time from words, quoting only where the restore parsers need
/// it (after kube-proxy's LineBuffer). The logic that decides rules never touches strings.
///
/// Every word and every `#` comment passes through `RestoreText.safe` (a no-op for the words
/// the compiler builds), so no input can start a line of its own or end a quoted word early,
/// whatever reached a Ruleset value.
struct LineWriter {
    private(set) var text = ""

    /// Appends one line made of `words`, separated by single spaces.
    mutating func write(_ words: [String]) {
        var previous: String? = nil
        for word in words {
            if previous != nil { text.append(" ") }
            // Comments are written as iptables-save prints them, so that the executor can compare
            // saved rules with compiled ones as plain text.
            text.append(previous == "--comment" ? LineWriter.savedComment(word) : LineWriter.quoted(word))
            previous = word
        }
        text.append("\n")
    }

    /// Appends one line made of `words`.
    mutating func write(_ words: String...) { write(words) }

    /// Appends `head` + `tail` + newline, unquoted: for text known to need no quoting.
    mutating func appendLine(_ head: String, _ tail: String) {
        text.append(head)
        text.append(tail)
        text.append("\n")
    }

    /// Appends a `# text` comment line (both restore formats skip them), `text` made safe.
    mutating func comment(_ text: String) {
        self.text.append("# ")
        self.text.append(RestoreText.safe(text))
        self.text.append("\n")
    }

    /// A word as iptables-restore reads it: made safe, then double-quoted when it has spaces,
    /// tabs or `#`, or is empty.
    static func quoted(_ word: String) -> String {
        let word = RestoreText.safe(word)
        if word.isEmpty { return "\"\"" }
        // Every character tested is ASCII, so scanning UTF-8 bytes is equivalent and much cheaper.
        guard word.utf8.contains(where: { $0 == 0x20 || $0 == 0x09 || $0 == 0x23 }) else { return word }
        return "\"" + word + "\""
    }

    /// A comment as iptables-save prints it (xtables_save_string): made safe, then bare when it
    /// is only `[A-Za-z0-9_-]`, else in double quotes (safe text has no quote or backslash to
    /// escape).
    static func savedComment(_ word: String) -> String {
        let word = RestoreText.safe(word)
        let bare = !word.isEmpty && word.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
        }
        return bare ? word : "\"" + word + "\""
    }
}

extension Ruleset {
    /// Input for `ipset restore`: every set, created then filled, IPv4 sets and IPv6 sets alike.
    /// Meant for a namespace that does not have these sets yet (the executor diffs instead).
    public func ipsetRestore(node: String) -> String {
        var out = LineWriter()
        out.comment("picket ipsets for node \(node); apply with: ipset restore -file ipset.restore")
        for set in sets {
            out.write(set.createWords)
        }
        for set in sets {
            // Member text never needs quoting (addresses, proto:port, `nomatch`): append it as is.
            let prefix = "add " + set.name + " "
            for member in set.members {
                out.appendLine(prefix, set.text(of: member))
            }
        }
        return out.text
    }

    /// Input for `iptables-restore --noflush` (`family` .v4) or `ip6tables-restore --noflush`
    /// (`.v6`): Picket's chains declared and filled, and its jumps inserted first in the built-in
    /// chains, one section per table (filter, then mangle). nil when the ruleset has no table of
    /// that family.
    public func iptablesRestore(family: IPAddress.Family, node: String) -> String? {
        guard let table = family == .v4 ? ipv4 : ipv6 else { return nil }
        let tool = family == .v4 ? "iptables-restore" : "ip6tables-restore"
        var out = LineWriter()
        out.comment("picket rules for node \(node); apply with: \(tool) --noflush, after ipset.restore")
        for name in TableName.allCases {
            let chains = table.chains.filter { $0.table == name }
            let hooks = table.hooks.filter { $0.table == name }
            guard !chains.isEmpty || !hooks.isEmpty else { continue }
            out.write("*\(name.rawValue)")
            for chain in chains {
                out.write(":\(chain.name)", "-", "[0:0]")
            }
            // Each built-in chain gets its hooks inserted at the top, in table order.
            var inserted: [String: Int] = [:]
            for hook in hooks {
                let position = inserted[hook.builtin, default: 0] + 1
                inserted[hook.builtin] = position
                out.write(["-I", hook.builtin, String(position)] + hook.stampedRule)
            }
            for chain in chains {
                for rule in chain.stampedRules {
                    out.write(["-A", chain.name] + rule)
                }
            }
            out.write("COMMIT")
        }
        return out.text
    }
}

extension IPSet {
    /// `create NAME TYPE family inet|inet6 hashsize 1024 maxelem N [comment skbinfo]`: the one
    /// place a `create` line is made, for restore files and for the executor alike.
    public static func createWords(name: String, type: String, family: String, maxElements: Int, extensions: [String]) -> [String] {
        ["create", name, type, "family", family, "hashsize", "1024", "maxelem", String(maxElements)] + extensions
    }

    /// `inet` or `inet6`, as ipset names the family.
    public var familyName: String { family == .v4 ? "inet" : "inet6" }

    /// The extensions its members use, as `ipset save` prints them.
    public var extensions: [String] { tagged ? ["comment", "skbinfo"] : [] }

    /// This set's `create` words.
    var createWords: [String] {
        Self.createWords(name: name, type: kind.rawValue, family: familyName, maxElements: maxElements, extensions: extensions)
    }
}


extension Chain {
    /// The rules as written: each with its identity (`RuleIdentity`) at the start of its comment,
    /// but the bare ones (`RuleIdentity.isBare`), which are written as they are.
    public var stampedRules: [[String]] {
        rules.map { RuleIdentity.isBare($0) ? $0 : RuleIdentity.stamped($0).words }
    }

    /// Each rule's identity, in order: what the executor compares with the kernel's.
    public var ruleHashes: [String] {
        rules.map { RuleIdentity.isBare($0) ? RuleIdentity.bare($0) : RuleIdentity.hash($0) }
    }

    /// Each rule as written after `-A NAME `, its identity included.
    public var ruleTexts: [String] { stampedRules.map(LineWriter.line) }
}

extension Hook {
    /// The hook's words as written, its identity included (a bare hook: as it is).
    public var stampedRule: [String] { comment == nil ? rule : RuleIdentity.stamped(rule).words }

    /// The hook's identity.
    public var ruleHash: String { comment == nil ? RuleIdentity.bare(rule) : RuleIdentity.hash(rule) }

    /// The hook as written after `-I BUILTIN N `.
    public var ruleText: String { LineWriter.line(stampedRule) }
}

/// Every rule Picket writes carries its identity: `picket:` and 16 base32 characters of SHA-256
/// over its words, at the start of its comment (a rule without one gets a comment of its own,
/// before its target). The executor compares these identities, in order, with the ones the
/// kernel's rules carry, never the text an iptables build prints (after Calico Felix's rule
/// hashes): two builds that print a rule differently agree on what it is, and a rule someone
/// else added or edited (without Picket's identity) is drift. An identity covers one rule's
/// words only, so a change to one rule changes one identity, and identical rules share one.
///
/// The rules of the per-packet path are bare (`isBare`): the hooks, the tagging chains, the
/// dispatch trees, the jumps into policy chains and the tests that a policy admitted. A comment
/// is a match of its own for the kernel to evaluate (an xtables extension even under nf_tables,
/// called through an indirect call), and on that path it would cost every packet or every new
/// connection that reaches it. A bare rule's identity is its text made canonical (`canonical`:
/// words split on blanks, numbers, quoted or not, and `V/M` marks in one notation), which is all
/// two iptables builds could print differently in such rules (mark and conntrack-mark values,
/// conntrack label bits, conntrack states, jumps, and the MARK, CONNMARK and SET targets). A rule read from the kernel without
/// Picket's comment gets the same kind of identity, so a foreign rule is drift unless it is
/// word for word one of Picket's bare rules.
public enum RuleIdentity {
    /// What a comment starts with when it carries an identity.
    public static let prefix = "picket:"
    /// Characters of an identity after the prefix.
    public static let length = 16

    /// The identity of a rule made of `words` (without its identity).
    public static func hash(_ words: [String]) -> String { Names.hash(["rule"] + words) }

    /// `words` with the identity added: into the rule's comment (cut to the kernel's limit
    /// after the identity), or as a comment of its own before the target.
    public static func stamped(_ words: [String]) -> (hash: String, words: [String]) {
        let hash = hash(words)
        var stamped = words
        if let i = words.firstIndex(of: "--comment"), i + 1 < words.count {
            stamped[i + 1] = RestoreText.comment(prefix + hash + " " + words[i + 1])
        } else {
            let target = words.firstIndex { $0 == "-j" || $0 == "-g" } ?? words.count
            stamped.insert(contentsOf: ["-m", "comment", "--comment", prefix + hash], at: target)
        }
        return (hash, stamped)
    }

    /// The identity of a bare rule made of `words`.
    public static func bare(_ words: [String]) -> String { Names.hash(["bare"] + canonical(words)) }

    /// Whether a rule is written bare, without an identity comment, and known by its canonical
    /// text: a rule without a comment of its own made only of words every iptables build prints
    /// as they are written: packet-mark and conntrack-mark tests (`-m mark`, `-m connmark`),
    /// conntrack-label tests and sets (`-m connlabel --label N [--set]`, the number quoted by
    /// iptables-save), conntrack state and direction tests (`-m conntrack --ctstate`,
    /// `--ctdir`), `!`, and a
    /// jump, a goto, or a MARK, CONNMARK (`--set-xmark`) or SET (`--map-set NAME src|dst
    /// --map-mark`) target.
    public static func isBare(_ words: [String]) -> Bool {
        var i = 0
        while i < words.count {
            switch words[i] {
            case "-m":
                guard i + 1 < words.count else { return false }
                switch words[i + 1] {
                case "mark", "connmark", "conntrack", "connlabel": i += 2
                default: return false
                }
            case "!", "--map-mark", "--set":
                i += 1
            case "--mark", "--label", "--ctstate", "--ctdir", "--set-xmark", "-j", "-g":
                guard i + 1 < words.count else { return false }
                i += 2
            case "--map-set":
                guard i + 2 < words.count, words[i + 2] == "src" || words[i + 2] == "dst" else { return false }
                i += 3
            default:
                return false
            }
        }
        return !words.isEmpty
    }

    /// The identity of a rule as the kernel's tools print it: the one in its comment, else its
    /// identity as a bare rule.
    public static func identity(ofSaved rule: Substring) -> String {
        hash(inSaved: rule) ?? bare(rule.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init))
    }

    /// Words in one notation: a number (decimal or hex, quoted or not: iptables-save quotes a
    /// connlabel's) or a `V/M` pair of numbers as lowercase hex (`0x20/0x30`); other words as
    /// they are.
    static func canonical(_ words: [String]) -> [String] {
        func number(_ text: Substring) -> UInt64? {
            let lower = text.lowercased()
            if lower.hasPrefix("0x") { return UInt64(lower.dropFirst(2), radix: 16) }
            return lower.isEmpty || !lower.allSatisfy(\.isNumber) ? nil : UInt64(lower)
        }
        func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
        return words.map { written in
            let quoted = written.utf8.count > 2 && written.utf8.first == UInt8(ascii: "\"") && written.utf8.last == UInt8(ascii: "\"")
            let word = quoted ? String(written.dropFirst().dropLast()) : written
            let parts = word.split(separator: "/", omittingEmptySubsequences: false)
            let values = parts.compactMap(number)
            guard values.count == parts.count, parts.count == 1 || parts.count == 2, word.first != "-" else { return written }
            return values.map(hex).joined(separator: "/")
        }
    }

    /// The identity a rule as the kernel's tools print it carries (`... --comment
    /// "picket:ABC... text" ...` or unquoted), or nil when it has none: the first comment
    /// starting with the prefix counts.
    public static func hash(inSaved rule: Substring) -> String? {
        var rest = rule[...]
        while let range = rest.range(of: "--comment ") {
            var text = rest[range.upperBound...].drop { $0 == " " }
            if text.first == "\"" { text = text.dropFirst() }
            if text.hasPrefix(prefix) {
                let value = text.dropFirst(prefix.count).prefix(length)
                let end = text.dropFirst(prefix.count + length).first
                if value.count == length, end == nil || end == " " || end == "\"" { return String(value) }
            }
            rest = text
        }
        return nil
    }
}

extension IPSet {
    /// Each member as `ipset save` prints it after `add NAME `.
    public var memberTexts: [String] { members.map(text) }

    /// A member as `ipset add` takes it and `ipset save` prints it, a tagged member's comment
    /// and mark included: `10.0.0.1 comment "PICKET-GRI-..." skbmark 0x10000/0xff0000`.
    public func text(of member: Member) -> String {
        guard let tag = member.tag else { return member.description }
        return member.description + " comment \"" + comments[Int(tag.comment)] + "\" skbmark 0x" + String(tag.mark, radix: 16)
            + "/0x" + String(tag.mask, radix: 16)
    }
}

extension LineWriter {
    /// One line of words, without the newline.
    static func line(_ words: [String]) -> String {
        var writer = LineWriter()
        writer.write(words)
        return String(writer.text.dropLast())
    }
}
