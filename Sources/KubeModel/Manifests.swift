import Yams

/// Something said about an input while decoding manifests: an error (the input is invalid) or
/// a note (the input was skipped on purpose, e.g. a kind Picket does not read).
public struct ManifestIssue: Hashable, Sendable, CustomStringConvertible {
    /// How serious it is.
    public enum Severity: String, Hashable, Sendable { case error, note }

    /// error or note.
    public var severity: Severity
    /// The file (or other source name) it concerns.
    public var source: String
    /// The object, as `Kind namespace/name`, when known.
    public var object: String?
    /// The field path inside the object, when known.
    public var field: String?
    /// What happened.
    public var message: String

    /// Creates an issue.
    public init(severity: Severity, source: String, object: String? = nil, field: String? = nil, message: String) {
        self.severity = severity
        self.source = source
        self.object = object
        self.field = field
        self.message = message
    }

    /// One line: `source: object: field: message`, with every character outside printable
    /// ASCII escaped (`\n`, `\x1b`, `\u{202e}`), so that no input can break the line or drive
    /// the terminal.
    public var description: String {
        ManifestIssue.printable([source, object, field].compactMap { $0 }.joined(separator: ": ") + ": \(message)")
    }

    /// `text` with control characters and non-ASCII escaped.
    static func printable(_ text: String) -> String {
        guard !text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case " "..."~": out.unicodeScalars.append(scalar)
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                let hex = String(scalar.value, radix: 16)
                out += scalar.value < 0x100 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{\(hex)}"
            }
        }
        return out
    }
}

/// Objects decoded from manifests, and what was said about them.
public struct ManifestSet: Sendable {
    /// Namespaces, in input order.
    public var namespaces: [Namespace] = []
    /// Pods, in input order.
    public var pods: [Pod] = []
    /// Policies, validated, in input order.
    public var policies: [Policy] = []
    /// Errors and notes, in input order.
    public var issues: [ManifestIssue] = []

    /// Creates an empty set.
    public init() {}

    /// Whether any error was found (notes do not count).
    public var hasErrors: Bool { issues.contains { $0.severity == .error } }

    /// Appends another set's contents.
    public mutating func append(contentsOf other: ManifestSet) {
        namespaces += other.namespaces
        pods += other.pods
        policies += other.policies
        issues += other.issues
    }

    /// The snapshot these objects describe.
    public var snapshot: ClusterSnapshot {
        ClusterSnapshot(namespaces: namespaces, pods: pods, policies: policies)
    }
}

/// Decodes `kubectl get -o yaml|json` output and hand-written manifests: single objects,
/// multi-document YAML, and `List`/`PodList`/... with `items`. JSON is read as YAML.
public enum ManifestDecoder {
    /// Decodes every object in `text`; `source` names the input in issues.
    public static func decode(_ text: String, source: String) -> ManifestSet {
        var set = ManifestSet()
        do {
            var index = 0
            var documents = try compose_all(yaml: text)
            // The sequence ends early on a syntax error and keeps it in `error`: the documents
            // before it are still decoded, and the error is reported.
            while let document = documents.next() {
                index += 1
                decode(document, source: source, location: "document \(index)", inferredKind: nil, into: &set)
            }
            if let error = documents.error { throw error }
        } catch {
            set.issues.append(ManifestIssue(severity: .error, source: source, message: "does not parse: \(describe(error))"))
        }
        return set
    }

    private static func decode(_ node: Node, source: String, location: String, inferredKind: String?, into set: inout ManifestSet) {
        guard node.mapping != nil else {
            if case .scalar(let s) = node, s.string.isEmpty || s.string == "null" { return }  // empty document
            set.issues.append(ManifestIssue(severity: .error, source: source, object: location, message: "is not an object (a mapping)"))
            return
        }
        let kind = node["kind"]?.string ?? inferredKind
        let apiVersion = node["apiVersion"]?.string ?? ""
        let object = objectName(node, kind: kind, fallback: location)
        guard let kind else {
            set.issues.append(ManifestIssue(severity: .error, source: source, object: location, field: "kind", message: "is missing"))
            return
        }
        if kind.hasSuffix("List"), let items = node["items"] {
            guard let sequence = items.sequence else {
                set.issues.append(ManifestIssue(severity: .error, source: source, object: object, field: "items", message: "is not a list"))
                return
            }
            // Typed lists from the API (PodList) may omit kind on their items.
            let itemKind = kind == "List" ? nil : String(kind.dropLast(4))
            for (i, item) in sequence.enumerated() {
                decode(item, source: source, location: "\(location) items[\(i)]", inferredKind: itemKind, into: &set)
            }
            return
        }
        do {
            switch (kind, group(of: apiVersion)) {
            case ("Namespace", ""):
                // An invalid namespace is kept (its name is still the namespace of its pods) and
                // reported; the snapshot never lets its pods be peers.
                let namespace = try YAMLDecoder().decode(Namespace.self, from: node)
                for error in Validation.errors(of: namespace) {
                    set.issues.append(ManifestIssue(
                        severity: .error, source: source, object: "Namespace \(namespace.name)", field: error.field, message: error.reason))
                }
                set.namespaces.append(namespace)
            case ("Pod", ""):
                // An invalid pod is kept for isolation and reported; the snapshot never lets it
                // be a peer.
                let pod = try YAMLDecoder().decode(Pod.self, from: node)
                for error in Validation.errors(of: pod) {
                    set.issues.append(ManifestIssue(
                        severity: .error, source: source, object: "Pod \(pod.key)", field: error.field, message: error.reason))
                }
                set.pods.append(pod)
            case ("NetworkPolicy", "networking.k8s.io"), ("NetworkPolicy", "extensions"):
                if apiVersion != "networking.k8s.io/v1" && !apiVersion.isEmpty {
                    set.issues.append(ManifestIssue(
                        severity: .note, source: source, object: object,
                        message: "apiVersion \(apiVersion) is read as networking.k8s.io/v1 (same fields)"))
                }
                let written = try YAMLDecoder().decode(NetworkPolicy.self, from: node)
                let policy = Policy(validating: written)
                for error in policy.errors {
                    set.issues.append(ManifestIssue(
                        severity: .error, source: source, object: "NetworkPolicy \(policy.key)", field: error.field,
                        message: error.reason))
                }
                set.policies.append(policy)
            default:
                set.issues.append(ManifestIssue(severity: .note, source: source, object: object, message: "skipped: Picket does not read this kind"))
            }
        } catch let error as DecodingError {
            let (field, message) = describe(error)
            set.issues.append(ManifestIssue(severity: .error, source: source, object: object, field: field, message: message))
        } catch {
            set.issues.append(ManifestIssue(severity: .error, source: source, object: object, message: describe(error)))
        }
    }

    private static func group(of apiVersion: String) -> String {
        guard let slash = apiVersion.firstIndex(of: "/") else { return "" }
        return String(apiVersion[..<slash])
    }

    private static func objectName(_ node: Node, kind: String?, fallback: String) -> String {
        let meta = node["metadata"]
        guard let name = meta?["name"]?.string else { return "\(kind ?? "object") (\(fallback), no metadata.name)" }
        if let namespace = meta?["namespace"]?.string { return "\(kind ?? "object") \(namespace)/\(name)" }
        return "\(kind ?? "object") \(name)"
    }

    private static func path(_ codingPath: [any CodingKey]) -> String {
        var out = ""
        for key in codingPath {
            if let i = key.intValue {
                out += "[\(i)]"
            } else {
                out += out.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return out
    }

    private static func describe(_ error: DecodingError) -> (field: String?, message: String) {
        switch error {
        case .keyNotFound(let key, let context):
            return (path(context.codingPath + [key]), "is required but missing")
        case .valueNotFound(let type, let context):
            return (path(context.codingPath), "is null, expected \(type)")
        case .typeMismatch(let type, let context):
            return (path(context.codingPath), "has the wrong type, expected \(type)")
        case .dataCorrupted(let context):
            return (context.codingPath.isEmpty ? nil : path(context.codingPath), context.debugDescription)
        @unknown default:
            return (nil, "\(error)")
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let yaml = error as? YamlError { return "\(yaml)".replacingNewlines() }
        return "\(error)".replacingNewlines()
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        split(whereSeparator: \.isNewline).map { line -> Substring in
            var s = line[...]
            while s.first == " " { s = s.dropFirst() }
            while s.last == " " { s = s.dropLast() }
            return s
        }.joined(separator: " ")
    }
}
