// Validation: the API server's rules for every field Picket reads, as functions over model
// values, so that every decoding path (Yams manifests, a JSON fast path, a watch) and the
// snapshot share one definition of "valid".
//
// Design note: Picket reads files that no API server has seen (CI, `apply --from`), and names
// end up in rule comments, so it checks what the API server would have checked, with the same
// rules and the same messages (k8s.io/apimachinery `pkg/util/validation` and
// `pkg/api/validate/content`). The checks scan UTF-8 bytes instead of running the API's regular
// expressions: every pattern is ASCII-only, so a byte scan is equivalent and cheap enough to run
// for every object of a large cluster. An invalid object is reported and then counts in the
// narrowest way (see `ClusterSnapshot`): it never widens what a policy allows.

/// The API server's validation of the fields Picket reads.
public enum Validation {
    // MARK: Per kind: the entry points decoders call

    /// What is invalid in a Namespace: its name (an RFC 1123 label) and its labels.
    public static func errors(of namespace: Namespace) -> [FieldError] {
        // Almost every object is valid: say so without building a message.
        if isValid(namespace) { return [] }
        var errors = objectName(namespace.name, rule: .label)
        // The automatic `kubernetes.io/metadata.name` label holds the name: reported once, above.
        var labels = namespace.labels
        if labels[Namespace.nameLabel] == namespace.name { labels[Namespace.nameLabel] = nil }
        errors += Validation.labels(labels, field: "metadata.labels")
        return errors
    }

    /// What is invalid in a Pod: name (an RFC 1123 subdomain), namespace (an RFC 1123 label),
    /// labels, spec.nodeName (a subdomain), container ports (IANA service names, 1-65535), and
    /// what its decoder could not represent (an unknown protocol, an address that does not parse).
    public static func errors(of pod: Pod) -> [FieldError] {
        // Almost every object is valid: say so without building a message.
        if isValid(pod) { return [] }
        var errors = objectName(pod.key.name, rule: .subdomain)
        errors += namespaceName(pod.key.namespace)
        errors += labels(pod.labels, field: "metadata.labels")
        if let node = pod.nodeName, !node.isEmpty {
            errors += nodeName(node, field: "spec.nodeName")
        }
        for (i, port) in pod.ports.enumerated() {
            let path = port.field ?? "spec.containers[*].ports[\(i)]"
            if let name = port.name {
                for message in portName(name) { errors.append(invalid("\(path).name", name, message)) }
            }
            for message in portNumber(port.number) { errors.append(invalid("\(path).containerPort", port.number, message)) }
        }
        errors += pod.invalidFields
        return errors
    }

    /// What is invalid in a Node: its name (a node name: an RFC 1123 subdomain), its labels, and
    /// what its decoder could not represent (a pod CIDR or an address that does not parse).
    public static func errors(of node: Node) -> [FieldError] {
        var errors = nodeName(node.name, field: "metadata.name")
        if !areValid(node.labels) { errors += labels(node.labels, field: "metadata.labels") }
        errors += node.invalidFields
        return errors
    }

    /// What is invalid in a NetworkPolicy's metadata: name (an RFC 1123 subdomain), namespace
    /// (an RFC 1123 label), labels. Its spec is checked by `Policy(validating:)`, which calls this.
    public static func metadataErrors(of policy: NetworkPolicy) -> [FieldError] {
        var errors = objectName(policy.key.name, rule: .subdomain)
        errors += namespaceName(policy.key.namespace)
        errors += labels(policy.labels, field: "metadata.labels")
        return errors
    }

    /// What is invalid in a node name (an RFC 1123 subdomain), reported under `field`
    /// (`spec.nodeName`, `--node`, `NODE_NAME`).
    public static func nodeName(_ name: String, field: String) -> [FieldError] {
        if name.isEmpty { return [FieldError(field: field, reason: "Required value")] }
        return dns1123Subdomain(name).map { invalid(field, name, $0) }
    }

    /// What is invalid in a label map: each key a qualified name, each value a label value.
    public static func labels(_ labels: [String: String], field: String) -> [FieldError] {
        var errors: [FieldError] = []
        for key in labels.keys.sorted() {
            errors += labelKey(key).map { invalid(field, key, $0) }
            errors += labelValue(labels[key]!).map { invalid(field, labels[key]!, $0) }
        }
        return errors
    }

    /// What is invalid in the syntax of a label selector's keys and values (the operators and
    /// value counts are checked by `LabelSelector.compiled()`).
    public static func selectorSyntax(_ selector: LabelSelector) -> [FieldError] {
        var errors = labels(selector.matchLabels ?? [:], field: "matchLabels")
        for (i, expression) in (selector.matchExpressions ?? []).enumerated() {
            errors += labelKey(expression.key).map { invalid("matchExpressions[\(i)].key", expression.key, $0) }
            for (j, value) in (expression.values ?? []).enumerated() {
                errors += labelValue(value).map { invalid("matchExpressions[\(i)].values[\(j)]", value, $0) }
            }
        }
        return errors
    }

    // MARK: The API's primitives (k8s.io/apimachinery), returning its messages

    /// Which DNS rule an object's name follows.
    public enum NameRule: Sendable {
        /// RFC 1123 label (Namespace).
        case label
        /// RFC 1123 subdomain (Pod, NetworkPolicy, Node).
        case subdomain
    }

    /// metadata.name: required, then the kind's DNS rule.
    public static func objectName(_ name: String, rule: NameRule) -> [FieldError] {
        if name.isEmpty { return [FieldError(field: "metadata.name", reason: "Required value: name or generateName is required")] }
        let messages = rule == .label ? dns1123Label(name) : dns1123Subdomain(name)
        return messages.map { invalid("metadata.name", name, $0) }
    }

    /// metadata.namespace of a namespaced object: an RFC 1123 label.
    public static func namespaceName(_ name: String) -> [FieldError] {
        dns1123Label(name).map { invalid("metadata.namespace", name, $0) }
    }

    static let dns1123LabelFormat = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    static let dns1123SubdomainFormat = dns1123LabelFormat + "(\\." + dns1123LabelFormat + ")*"
    static let labelKeyFormat = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
    static let labelKeyMessage = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"

    /// IsDNS1123Label: at most 63 characters of [a-z0-9-], alphanumeric at both ends.
    public static func dns1123Label(_ value: String) -> [String] {
        var errors: [String] = []
        if value.utf8.count > 63 { errors.append(maxLength(63)) }
        if !isLabel(value.utf8) {
            if isSubdomain(value.utf8) {
                // A valid subdomain but not a label: it has dots.
                errors.append("must not contain dots")
            } else {
                errors.append(regexError(
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                    dns1123LabelFormat, examples: ["my-name", "123-abc"]))
            }
        }
        return errors
    }

    /// IsDNS1123Subdomain: at most 253 characters, dot-separated RFC 1123 labels.
    public static func dns1123Subdomain(_ value: String) -> [String] {
        var errors: [String] = []
        if value.utf8.count > 253 { errors.append(maxLength(253)) }
        if !isSubdomain(value.utf8) {
            errors.append(regexError(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                dns1123SubdomainFormat, examples: ["example.com"]))
        }
        return errors
    }

    /// IsQualifiedName (a label key): an optional subdomain prefix and '/', then a name of at most
    /// 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends.
    public static func labelKey(_ value: String) -> [String] {
        var errors: [String] = []
        let parts = value.split(separator: "/", omittingEmptySubsequences: false)
        let name: Substring
        switch parts.count {
        case 1:
            name = parts[0]
        case 2:
            let prefix = parts[0]
            name = parts[1]
            if prefix.isEmpty {
                errors.append("prefix part must be non-empty")
            } else {
                errors += dns1123Subdomain(String(prefix)).map { "prefix part " + $0 }
            }
        default:
            return ["a valid label key " + regexError(labelKeyMessage, labelKeyFormat, examples: ["MyName", "my.name", "123-abc"])
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
        }
        if name.isEmpty {
            errors.append("name part must be non-empty")
        } else if name.utf8.count > 63 {
            errors.append("name part " + maxLength(63))
        }
        if !isQualifiedNamePart(name.utf8) {
            errors.append("name part " + regexError(labelKeyMessage, labelKeyFormat, examples: ["MyName", "my.name", "123-abc"]))
        }
        return errors
    }

    /// IsValidLabelValue: empty, or at most 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends.
    public static func labelValue(_ value: String) -> [String] {
        var errors: [String] = []
        if value.utf8.count > 63 { errors.append(maxLength(63)) }
        if !value.isEmpty && !isQualifiedNamePart(value.utf8) {
            errors.append(regexError(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                "(" + labelKeyFormat + ")?", examples: ["MyValue", "my_value", "12345"]))
        }
        return errors
    }

    /// IsValidPortName (an IANA_SVC_NAME): at most 15 characters of [a-z0-9-], at least one
    /// letter, no hyphen at either end or next to another.
    public static func portName(_ value: String) -> [String] {
        var errors: [String] = []
        let bytes = value.utf8
        if bytes.count > 15 { errors.append(maxLength(15)) }
        if bytes.isEmpty || !bytes.allSatisfy({ isLower($0) || isDigit($0) || $0 == hyphen }) {
            errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
        }
        if !bytes.contains(where: isLower) { errors.append("must contain at least one letter (a-z)") }
        if zip(bytes, bytes.dropFirst()).contains(where: { $0 == hyphen && $1 == hyphen }) {
            errors.append("must not contain consecutive hyphens")
        }
        if bytes.first == hyphen || bytes.last == hyphen { errors.append("must not begin or end with a hyphen") }
        return errors
    }

    /// IsValidPortNum: 1-65535.
    public static func portNumber(_ value: Int) -> [String] {
        (1...65535).contains(value) ? [] : ["must be between 1 and 65535, inclusive"]
    }

    /// A field error in the API's form: `Invalid value: "VALUE": message`, the value quoted and
    /// escaped (and shortened past 80 characters) so that it stays on one line whatever it holds.
    public static func invalid(_ field: String, _ value: String, _ message: String) -> FieldError {
        FieldError(field: field, reason: "Invalid value: \(quoted(value)): \(message)")
    }

    /// A field error for a number.
    public static func invalid(_ field: String, _ value: Int, _ message: String) -> FieldError {
        FieldError(field: field, reason: "Invalid value: \(value): \(message)")
    }

    /// `"text"` with `"`, `\` and every character outside printable ASCII escaped (`\n`, `\t`,
    /// `\x00`, `\u{...}`), cut after 80 characters with `...`: safe to print on one line.
    public static func quoted(_ value: String) -> String {
        var out = "\""
        var count = 0
        for scalar in value.unicodeScalars {
            if count == 80 {
                out += "..."
                break
            }
            count += 1
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case " "..."~": out.unicodeScalars.append(scalar)
            default:
                let hex = String(scalar.value, radix: 16)
                out += scalar.value < 0x100 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{\(hex)}"
            }
        }
        return out + "\""
    }

    // MARK: Scanners (ASCII patterns over UTF-8 bytes)

    private static let hyphen = UInt8(ascii: "-")
    private static let dot = UInt8(ascii: ".")

    private static func isLower(_ b: UInt8) -> Bool { b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z") }
    private static func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        isLower(b) || isDigit(b) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
    }

    /// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
    private static func isLabel<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Bool {
        guard let first = bytes.first, isLower(first) || isDigit(first) else { return false }
        var last = first
        for b in bytes {
            guard isLower(b) || isDigit(b) || b == hyphen else { return false }
            last = b
        }
        return isLower(last) || isDigit(last)
    }

    /// Labels separated by single dots.
    private static func isSubdomain<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Bool {
        var previous: UInt8 = dot  // the start behaves like a dot: a label must begin
        for b in bytes {
            if b == dot {
                guard isLower(previous) || isDigit(previous) else { return false }
            } else if b == hyphen {
                guard previous != dot else { return false }
            } else if !(isLower(b) || isDigit(b)) {
                return false
            } 
            previous = b
        }
        return isLower(previous) || isDigit(previous)
    }

    /// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
    private static func isQualifiedNamePart<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Bool {
        guard let first = bytes.first, isAlphanumeric(first) else { return false }
        var last = first
        for b in bytes {
            guard isAlphanumeric(b) || b == hyphen || b == dot || b == UInt8(ascii: "_") else { return false }
            last = b
        }
        return isAlphanumeric(last)
    }

    // MARK: Validity without messages (the snapshot asks this of every object)

    /// Whether `errors(of: pod)` is empty, without building any message.
    public static func isValid(_ pod: Pod) -> Bool {
        guard pod.invalidFields.isEmpty, isValidName(pod.key.name, maxLength: 253, label: false),
              isValidName(pod.key.namespace, maxLength: 63, label: true), areValid(pod.labels)
        else { return false }
        if let node = pod.nodeName, !node.isEmpty, !isValidName(node, maxLength: 253, label: false) { return false }
        for port in pod.ports {
            guard (1...65535).contains(port.number) else { return false }
            if let name = port.name, !isValidPortName(name.utf8) { return false }
        }
        return true
    }

    /// Whether `errors(of: namespace)` is empty, without building any message.
    public static func isValid(_ namespace: Namespace) -> Bool {
        isValidName(namespace.name, maxLength: 63, label: true) && areValid(namespace.labels)
    }

    /// Whether `portName` finds nothing, without building a message.
    private static func isValidPortName(_ bytes: String.UTF8View) -> Bool {
        guard !bytes.isEmpty, bytes.count <= 15, bytes.first != hyphen, bytes.last != hyphen else { return false }
        var letter = false
        var previous: UInt8 = 0
        for b in bytes {
            guard isLower(b) || isDigit(b) || b == hyphen, !(b == hyphen && previous == hyphen) else { return false }
            letter = letter || isLower(b)
            previous = b
        }
        return letter
    }

    private static func isValidName(_ name: String, maxLength: Int, label: Bool) -> Bool {
        name.utf8.count <= maxLength && (label ? isLabel(name.utf8) : isSubdomain(name.utf8))
    }

    private static func areValid(_ labels: [String: String]) -> Bool {
        for (key, value) in labels {
            guard value.utf8.count <= 63, value.isEmpty || isQualifiedNamePart(value.utf8) else { return false }
            if let slash = key.utf8.firstIndex(of: UInt8(ascii: "/")) {
                let prefix = key.utf8[..<slash]
                let name = key.utf8[key.utf8.index(after: slash)...]
                guard prefix.count <= 253, isSubdomain(prefix), name.count <= 63, isQualifiedNamePart(name) else { return false }
            } else {
                guard key.utf8.count <= 63, isQualifiedNamePart(key.utf8) else { return false }
            }
        }
        return true
    }

    private static func maxLength(_ n: Int) -> String { "must be no more than \(n) characters" }

    /// The API's RegexError: `message (e.g. 'a',  or 'b', regex used for validation is 'R')`.
    private static func regexError(_ message: String, _ format: String, examples: [String]) -> String {
        var text = message + " (e.g. "
        for (i, example) in examples.enumerated() {
            if i > 0 { text += " or " }
            text += "'\(example)', "
        }
        return text + "regex used for validation is '\(format)')"
    }
}
