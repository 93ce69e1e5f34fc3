import KubeModel

/// A structural check of restore text: every line must be one Picket writes, touching only
/// Picket's chains (`PICKET-*`) and sets (`picket-*`) plus the hooks of a fixed table. The
/// tests check every compiled output with it, and the executor checks every text it is about to
/// restore, so that no input (nor a bug) can put a line outside Picket's chains and sets into the
/// kernel. Cheap: one pass over the text, no allocation per byte.
///
/// Table-driven: the tables, hooks, targets, set types and option words it accepts are lists;
/// extend them (a `*mangle` table, `-j SET --map-set ... --map-mark`, `skbinfo` sets with
/// `skbmark` members) by building a guard with longer lists, e.g. `RestoreGuard.standard` plus
/// entries.
///
/// iptables-restore text, per line:
///   `# ...`                               comment (printable ASCII)
///   `*TABLE` ... `COMMIT`                 a table of `tables`, in order, never nested
///   `:PICKET-NAME - [0:0]`                a Picket chain
///   `-A PICKET-NAME WORDS`                a rule in a Picket chain
///   `-I BUILTIN N WORDS`                  a hook of `hooks` (its `-j` target is the hook's)
///   `-D BUILTIN N`                        removal by position of a rule of a built-in chain of
///                                         `builtins` (the executor removes stale or stray jumps
///                                         into Picket's chains this way)
///   `-X PICKET-NAME`                      deletion of a Picket chain
/// where WORDS tokenize with iptables-restore's quoting rules, hold no command or table option
/// (except as a comment's text), jump only to Picket chains or `targets`, and name only Picket
/// sets after the options of `setOptions`.
///
/// ipset restore text, per line:
///   `# ...`
///   `create picket-NAME TYPE OPTIONS`     TYPE of `setTypes`, OPTIONS of `createOptions`
///   `add picket-NAME MEMBER OPTIONS`      MEMBER an address, block or `address,proto:port`;
///   `del picket-NAME MEMBER OPTIONS`      OPTIONS of `memberOptions`
///   `destroy picket-NAME`
///   `swap picket-NAME picket-NAME`
public struct RestoreGuard: Sendable {
    /// A jump from a built-in chain of a table into one of Picket's chains.
    public struct Hook: Hashable, Sendable {
        /// The table, e.g. `filter`.
        public var table: String
        /// The built-in chain, e.g. `FORWARD`.
        public var builtin: String
        /// Picket's chain it jumps to, e.g. `PICKET-MARK-FORWARD`.
        public var target: String

        /// Creates a hook entry.
        public init(table: String, builtin: String, target: String) {
            self.table = table
            self.builtin = builtin
            self.target = target
        }
    }

    /// What an option word of an ipset line takes.
    public enum OptionValue: Hashable, Sendable {
        /// Nothing: a flag (`nomatch`, `skbinfo`).
        case flag
        /// A decimal number (`hashsize 1024`).
        case number
        /// One of these words (`family inet`).
        case oneOf([String])
        /// `0xVALUE/0xMASK` or `0xVALUE` (`skbmark 0x10/0xf0`).
        case mark
        /// A Picket chain's name in double quotes (a dispatch-set member's comment).
        case quotedChain
    }

    /// Tables whose `*TABLE` header may open a transaction.
    public var tables: [String]
    /// The only rules allowed outside Picket's chains.
    public var hooks: [Hook]
    /// Built-in chains per table, from which `-D BUILTIN N` may remove a rule.
    public var builtins: [String: Set<String>]
    /// Targets of `-j`/`-g` besides Picket's chains.
    public var targets: Set<String>
    /// Options whose next word must be a Picket set (`--match-set`).
    public var setOptions: Set<String>
    /// ipset types `create` may use.
    public var setTypes: Set<String>
    /// Options of `create` lines.
    public var createOptions: [String: OptionValue]
    /// Options after a member in `add`/`del` lines.
    public var memberOptions: [String: OptionValue]

    /// Creates a guard from its lists.
    public init(
        tables: [String], hooks: [Hook], builtins: [String: Set<String>], targets: Set<String>, setOptions: Set<String>,
        setTypes: Set<String>, createOptions: [String: OptionValue], memberOptions: [String: OptionValue]
    ) {
        self.tables = tables
        self.hooks = hooks
        self.builtins = builtins
        self.targets = targets
        self.setOptions = setOptions
        self.setTypes = setTypes
        self.createOptions = createOptions
        self.memberOptions = memberOptions
    }

    /// What Picket writes today: the mangle table hooked from FORWARD and INPUT, and in filter,
    /// where earlier layouts judged, only removals (`-D BUILTIN N`, `-X PICKET-NAME`).
    public static let standard = RestoreGuard(
        tables: ["mangle", "filter"],
        hooks: [
            Hook(table: "mangle", builtin: "FORWARD", target: Names.markForwardChain),
            Hook(table: "mangle", builtin: "INPUT", target: Names.markInputChain),
        ],
        builtins: ["filter": ["INPUT", "FORWARD", "OUTPUT"], "mangle": ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]],
        targets: ["ACCEPT", "DROP", "RETURN", "REJECT", "MARK", "CONNMARK", "SET"],
        setOptions: ["--match-set", "--map-set"],
        setTypes: ["hash:ip", "hash:net", "hash:ip,port"],
        createOptions: [
            "family": .oneOf(["inet", "inet6"]), "hashsize": .number, "maxelem": .number, "comment": .flag, "skbinfo": .flag,
        ],
        memberOptions: ["nomatch": .flag, "comment": .quotedChain, "skbmark": .mark])

    /// One line the guard refuses.
    public struct Violation: Hashable, Sendable, CustomStringConvertible {
        /// 1-based line number in the text.
        public var line: Int
        /// The line, made printable.
        public var text: String
        /// Why it is refused.
        public var reason: String

        public var description: String { "line \(line): \(reason): \(text)" }
    }

    // MARK: iptables-restore

    /// The lines of iptables-restore input that are not Picket's (empty when all are).
    public func violations(inTableRestore text: String) -> [Violation] {
        var violations: [Violation] = []
        var table: String? = nil
        let lines = RestoreGuard.lines(text)
        for (index, line) in lines.enumerated() {
            func refuse(_ reason: String) {
                violations.append(Violation(line: index + 1, text: RestoreGuard.printable(line), reason: reason))
            }
            if let reason = RestoreGuard.unsafeBytes(line) {
                refuse(reason)
                continue
            }
            if line.hasPrefix("#") { continue }
            if line.hasPrefix("*") {
                let name = String(line.dropFirst())
                if table != nil { refuse("a table opens before the previous one is committed") }
                if !tables.contains(name) { refuse("table \(name) is not one of Picket's (\(tables.joined(separator: ", ")))") }
                table = name
                continue
            }
            guard let current = table else {
                refuse("outside a table (no *TABLE line before it)")
                continue
            }
            if line == "COMMIT" {
                table = nil
                continue
            }
            if line.hasPrefix(":") {
                let parts = line.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
                if parts.count != 3 || !RestoreGuard.isChainName(parts[0]) || parts[1] != "-" || parts[2] != "[0:0]" {
                    refuse("a chain declaration other than `:PICKET-NAME - [0:0]`")
                }
                continue
            }
            guard let words = RestoreGuard.words(line) else {
                refuse("unbalanced quotes")
                continue
            }
            if let reason = check(words, table: current) { refuse(reason) }
        }
        if table != nil {
            violations.append(Violation(line: lines.count, text: "", reason: "table \(table!) is not committed"))
        }
        return violations
    }

    /// Why a command line (already tokenized) is not Picket's, or nil.
    private func check(_ words: [String], table: String) -> String? {
        guard words.count >= 2 else { return "not a command Picket writes" }
        let command = words[0]
        let chain = words[1]
        let tableHooks = hooks.filter { $0.table == table }
        switch command {
        case "-A":
            guard RestoreGuard.isChainName(chain[...]) else { return "appends to \(chain), not a Picket chain" }
            return checkRule(words.dropFirst(2))
        case "-X":
            guard words.count == 2, RestoreGuard.isChainName(chain[...]) else { return "deletes something other than one Picket chain" }
            return nil
        case "-D":
            guard builtins[table]?.contains(chain) == true else { return "deletes from \(chain), not a built-in chain of \(table)" }
            guard words.count == 3, RestoreGuard.isPosition(words[2]) else { return "a deletion other than `-D BUILTIN N`" }
            return nil
        case "-I":
            guard words.count >= 4, RestoreGuard.isPosition(words[2]) else { return "an insertion other than `-I BUILTIN N RULE`" }
            let rule = words.dropFirst(3)
            guard let jump = rule.firstIndex(where: { $0 == "-j" || $0 == "-g" }), jump + 1 < rule.endIndex,
                  tableHooks.contains(where: { $0.builtin == chain && $0.target == rule[jump + 1] })
            else { return "inserts into \(chain) a rule that is not one of Picket's hooks" }
            return checkRule(rule)
        default:
            return "\(command) is not a command Picket writes"
        }
    }

    /// Why the words of a rule (after `-A CHAIN`) are not Picket's, or nil.
    private func checkRule(_ rule: ArraySlice<String>) -> String? {
        var i = rule.startIndex
        while i < rule.endIndex {
            let word = rule[i]
            let next = i + 1 < rule.endIndex ? rule[i + 1] : nil
            if word == "--comment" {
                guard next != nil else { return "--comment without text" }
                i += 2
                continue
            }
            if RestoreGuard.commandWords.contains(word) { return "\(word) inside a rule" }
            if word == "-j" || word == "-g" {
                guard let target = next, RestoreGuard.isChainName(target[...]) || targets.contains(target) else {
                    return "jumps to \(next ?? "nothing"), neither a Picket chain nor an allowed target"
                }
            }
            if setOptions.contains(word) {
                guard let set = next, RestoreGuard.isSetName(set[...]) else { return "\(word) names \(next ?? "nothing"), not a Picket set" }
            }
            i += 1
        }
        return nil
    }

    /// Options that would make a rule line a different command, or change the table.
    static let commandWords: Set<String> = [
        "-A", "--append", "-C", "--check", "-D", "--delete", "-I", "--insert", "-R", "--replace", "-L", "--list",
        "-S", "--list-rules", "-F", "--flush", "-Z", "--zero", "-N", "--new-chain", "-X", "--delete-chain", "-P",
        "--policy", "-E", "--rename-chain", "-t", "--table",
    ]

    // MARK: ipset restore

    /// The lines of ipset restore input that are not Picket's (empty when all are).
    public func violations(inSetRestore text: String) -> [Violation] {
        var violations: [Violation] = []
        for (index, line) in RestoreGuard.lines(text).enumerated() {
            func refuse(_ reason: String) {
                violations.append(Violation(line: index + 1, text: RestoreGuard.printable(line), reason: reason))
            }
            if let reason = RestoreGuard.unsafeBytes(line) {
                refuse(reason)
                continue
            }
            if line.hasPrefix("#") { continue }
            var words = line.split(separator: " ", omittingEmptySubsequences: false)
            // `add -exist`: replace a member's tag in place.
            if words.count >= 2 && words[0] == "add" && words[1] == "-exist" { words.remove(at: 1) }
            guard words.count >= 2, RestoreGuard.isSetName(words[1]) else {
                refuse("does not name a Picket set as its first argument")
                continue
            }
            switch words[0] {
            case "create":
                guard words.count >= 3, setTypes.contains(String(words[2])) else {
                    refuse("creates a set of a type Picket does not use")
                    continue
                }
                if let reason = checkOptions(words.dropFirst(3), createOptions) { refuse(reason) }
            case "add", "del":
                guard words.count >= 3, RestoreGuard.isMember(words[2]) else {
                    refuse("\(words[0]) of something other than an address, block or address,proto:port")
                    continue
                }
                if let reason = checkOptions(words.dropFirst(3), memberOptions) { refuse(reason) }
            case "destroy":
                if words.count != 2 { refuse("destroy of something other than one Picket set") }
            case "swap":
                if words.count != 3 || !RestoreGuard.isSetName(words[2]) { refuse("swap with something other than a Picket set") }
            default:
                refuse("\(words[0]) is not an ipset command Picket writes")
            }
        }
        return violations
    }

    /// Why option words are not allowed, or nil.
    private func checkOptions(_ words: ArraySlice<Substring>, _ allowed: [String: OptionValue]) -> String? {
        var i = words.startIndex
        while i < words.endIndex {
            let word = String(words[i])
            guard let kind = allowed[word] else { return "option \(word) is not one Picket writes" }
            i += 1
            if kind == .flag { continue }
            guard i < words.endIndex else { return "option \(word) without a value" }
            let value = words[i]
            let ok: Bool
            switch kind {
            case .flag: ok = true
            case .number: ok = !value.isEmpty && value.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
            case .oneOf(let choices): ok = choices.contains(String(value))
            case .mark: ok = RestoreGuard.isMark(value)
            case .quotedChain:
                ok = value.count > 2 && value.first == "\"" && value.last == "\""
                    && RestoreGuard.isChainName(value.dropFirst().dropLast())
            }
            if !ok { return "option \(word) has an invalid value" }
            i += 1
        }
        return nil
    }

    // MARK: Pieces

    /// The lines of a text, split at every newline byte (as the restore tools read it, so a
    /// `\r\n` is not one line end); the empty piece after a final newline is not a line.
    static func lines(_ text: String) -> [Substring] {
        var lines = text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).map { Substring($0) }
        if lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }

    /// Why a line has bytes no restore line of Picket's has (control characters, non-ASCII), or nil.
    static func unsafeBytes(_ line: Substring) -> String? {
        if line.isEmpty { return "an empty line" }
        for byte in line.utf8 where byte < 0x20 || byte >= 0x7F {
            return "a byte outside printable ASCII (0x\(String(byte, radix: 16)))"
        }
        return nil
    }

    /// Words of a line as iptables-restore splits them (xtables `add_param_to_argv`): spaces and
    /// tabs separate words outside double quotes; inside them a backslash escapes the next
    /// character and a closing quote ends the word. nil when a quote is left open.
    public static func words(_ line: Substring) -> [String]? {
        var words: [String] = []
        var current: [UInt8] = []
        var quoted = false
        var escaped = false
        var inWord = false
        for byte in line.utf8 {
            if quoted {
                if escaped {
                    current.append(byte)
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    quoted = false
                    words.append(String(decoding: current, as: UTF8.self))
                    current = []
                    inWord = false
                } else {
                    current.append(byte)
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                quoted = true
                inWord = true
            case UInt8(ascii: " "), UInt8(ascii: "\t"):
                if inWord && !current.isEmpty {
                    words.append(String(decoding: current, as: UTF8.self))
                }
                current = []
                inWord = false
            default:
                current.append(byte)
                inWord = true
            }
        }
        if quoted { return nil }
        if !current.isEmpty { words.append(String(decoding: current, as: UTF8.self)) }
        return words
    }

    /// `PICKET-` and `[A-Za-z0-9_.-]`, within iptables' 28 characters. Picket's own names are
    /// upper case; the wider alphabet lets a stale chain of another spelling that the kernel
    /// holds under the prefix still be deleted.
    static func isChainName(_ name: Substring) -> Bool {
        name.hasPrefix(Names.chainPrefix) && name.utf8.count > Names.chainPrefix.utf8.count && name.utf8.count <= Names.maxChainLength
            && name.utf8.allSatisfy(isNameByte)
    }

    /// `picket-` and `[A-Za-z0-9_.-]`, within ipset's 31 characters.
    static func isSetName(_ name: Substring) -> Bool {
        name.hasPrefix(Names.setPrefix) && name.utf8.count > Names.setPrefix.utf8.count && name.utf8.count <= Names.maxSetLength
            && name.utf8.allSatisfy(isNameByte)
    }

    private static func isNameByte(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x5F || b == 0x2E
    }

    /// A positive decimal rule position.
    static func isPosition(_ word: String) -> Bool {
        guard let n = Int(word), n >= 1 else { return false }
        return String(n) == word
    }

    /// `ADDRESS`, `ADDRESS/PREFIX` or `ADDRESS,PROTO:PORT` (PROTO tcp, udp or sctp).
    static func isMember(_ word: Substring) -> Bool {
        let parts = word.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false)
        if parts.count == 2 {
            let port = parts[1].split(separator: ":", omittingEmptySubsequences: false)
            guard port.count == 2, ["tcp", "udp", "sctp"].contains(port[0]), let n = Int(port[1]), (0...65535).contains(n),
                  String(n) == port[1]
            else { return false }
            return IPAddress(String(parts[0])) != nil
        }
        return word.contains("/") ? CIDR(String(word)) != nil : IPAddress(String(word)) != nil
    }

    /// `0xHEX` or `0xHEX/0xHEX`.
    static func isMark(_ word: Substring) -> Bool {
        word.split(separator: "/", omittingEmptySubsequences: false).enumerated().allSatisfy { i, part in
            i < 2 && part.hasPrefix("0x") && part.count > 2 && part.count <= 10 && UInt32(part.dropFirst(2), radix: 16) != nil
        }
    }

    /// A line for an error message: non-printable bytes as `\xNN`, cut after 200 characters.
    public static func printableLine(_ line: Substring) -> String { printable(line) }

    static func printable(_ line: Substring) -> String {
        var out = ""
        for byte in line.utf8.prefix(200) {
            if byte >= 0x20 && byte < 0x7F {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            }
        }
        return line.utf8.count > 200 ? out + "..." : out
    }
}
