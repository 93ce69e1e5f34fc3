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
    /// Nodes, in input order. Manifest files never fill this (they skip Node objects with a
    /// note); objects admitted from API responses may.
    public var nodes: [Node] = []
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
        nodes += other.nodes
        issues += other.issues
    }

    /// The snapshot these objects describe.
    public var snapshot: ClusterSnapshot {
        ClusterSnapshot(namespaces: namespaces, pods: pods, policies: policies)
    }
}

/// One decoded object, on its way into a `ManifestSet` or an `APIItem`.
public enum ManifestObject: Sendable {
    /// A v1 Namespace.
    case namespace(Namespace)
    /// A v1 Pod.
    case pod(Pod)
    /// A NetworkPolicy as written, not validated yet.
    case networkPolicy(NetworkPolicy)
    /// A v1 Node (from API responses only).
    case node(Node)
}

extension ManifestSet {
    /// Admits one decoded object: the single way a Namespace, Pod, NetworkPolicy or Node enters
    /// a set, whichever syntax (YAML or JSON) it was read from. The checks are those of
    /// `admission(of:source:)`; the object is kept whatever they find.
    public mutating func admit(_ object: ManifestObject, source: String) {
        let (admitted, found) = ManifestSet.admission(of: object, source: source)
        issues += found
        switch admitted {
        case .namespace(let namespace): namespaces.append(namespace)
        case .pod(let pod): pods.append(pod)
        case .networkPolicy(let policy): policies.append(policy)
        case .node(let node): nodes.append(node)
        }
    }

    /// Checks one decoded object, for `admit` and for API responses alike: checks on decoded
    /// objects belong here, so that every reader applies them. Namespaces, pods and nodes are
    /// validated as the API server validates them (`Validation.swift`), policies by
    /// `Policy(validating:)`; errors become issues naming `source` and the object. Returns the
    /// object as kept (an invalid pod or namespace is never a peer; an invalid policy fails
    /// closed) and the issues.
    public static func admission(of object: ManifestObject, source: String) -> (object: APIObject, issues: [ManifestIssue]) {
        var issues: [ManifestIssue] = []
        switch object {
        case .namespace(let namespace):
            // An invalid namespace is kept (its name is still the namespace of its pods) and
            // reported; the snapshot never lets its pods be peers.
            for error in Validation.errors(of: namespace) {
                issues.append(ManifestIssue(
                    severity: .error, source: source, object: "Namespace \(namespace.name)", field: error.field, message: error.reason))
            }
            return (.namespace(namespace), issues)
        case .pod(let pod):
            // An invalid pod is kept for isolation and reported; the snapshot never lets it be a
            // peer.
            for error in Validation.errors(of: pod) {
                issues.append(ManifestIssue(
                    severity: .error, source: source, object: "Pod \(pod.key)", field: error.field, message: error.reason))
            }
            return (.pod(pod), issues)
        case .networkPolicy(let written):
            let policy = Policy(validating: written)
            for error in policy.errors {
                issues.append(ManifestIssue(
                    severity: .error, source: source, object: "NetworkPolicy \(policy.key)", field: error.field,
                    message: error.reason))
            }
            return (.networkPolicy(policy), issues)
        case .node(let node):
            // An invalid node is kept and reported: its valid pod CIDRs and addresses still count.
            for error in Validation.errors(of: node) {
                issues.append(ManifestIssue(
                    severity: .error, source: source, object: "Node \(node.name)", field: error.field, message: error.reason))
            }
            return (.node(node), issues)
        }
    }
}

/// Decodes `kubectl get -o yaml|json` output and hand-written manifests: single objects,
/// multi-document YAML, and `List`/`PodList`/... with `items`. JSON (a document whose first
/// non-blank byte is `{` or `[`) goes to the JSON reader (`JSONManifests.swift`), anything else
/// to Yams; both produce the same `ManifestSet` for the same objects.
public enum ManifestDecoder {
    /// Decodes every object in `text`; `source` names the input in issues.
    public static func decode(_ text: String, source: String) -> ManifestSet {
        var contiguous = text
        contiguous.makeContiguousUTF8()
        let json = contiguous.utf8.withContiguousStorageIfAvailable { utf8 -> ManifestSet? in
            let bytes = UnsafeRawBufferPointer(utf8)
            return isJSON(bytes) ? decodeJSON(bytes, source: source) : nil
        }
        if let json, let json { return json }
        return decodeYAML(text, source: source)
    }

    /// Decodes every object in a file's bytes: JSON directly, YAML once checked to be UTF-8.
    public static func decode(bytes: UnsafeRawBufferPointer, source: String) -> ManifestSet {
        if isJSON(bytes) { return decodeJSON(bytes, source: source) }
        guard let text = String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self) else {
            var set = ManifestSet()
            set.issues.append(ManifestIssue(severity: .error, source: source, message: "is not UTF-8 text"))
            return set
        }
        return decodeYAML(text, source: source)
    }

    /// Whether the first byte after blanks (and a UTF-8 byte order mark) is `{` or `[`.
    static func isJSON(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        return i < bytes.count && (bytes[i] == UInt8(ascii: "{") || bytes[i] == UInt8(ascii: "["))
    }

    /// Decodes YAML with Yams, whatever the text looks like (JSON is YAML too, but slow this way).
    public static func decodeYAML(_ text: String, source: String) -> ManifestSet {
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

    private static func decode(_ node: Yams.Node, source: String, location: String, inferredKind: String?, into set: inout ManifestSet) {
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
            switch classify(kind: kind, apiVersion: apiVersion) {
            case .namespace:
                set.admit(.namespace(try YAMLDecoder().decode(Namespace.self, from: node)), source: source)
            case .pod:
                set.admit(.pod(try YAMLDecoder().decode(Pod.self, from: node)), source: source)
            case .networkPolicy:
                if let note = apiVersionNote(apiVersion, source: source, object: object) { set.issues.append(note) }
                set.admit(.networkPolicy(try YAMLDecoder().decode(NetworkPolicy.self, from: node)), source: source)
            case .node, .other:
                // Nodes too: only API responses carry them (`APIDecoder`).
                set.issues.append(skippedNote(source: source, object: object))
            }
        } catch let error as DecodingError {
            let (field, message) = describe(error)
            set.issues.append(ManifestIssue(severity: .error, source: source, object: object, field: field, message: message))
        } catch {
            set.issues.append(ManifestIssue(severity: .error, source: source, object: object, message: describe(error)))
        }
    }

    /// The kinds Picket reads.
    enum Kind {
        case namespace, pod, networkPolicy, node, other
    }

    /// What a `kind` and `apiVersion` name.
    static func classify(kind: String, apiVersion: String) -> Kind {
        switch (kind, group(of: apiVersion)) {
        case ("Namespace", ""): .namespace
        case ("Pod", ""): .pod
        case ("Node", ""): .node
        case ("NetworkPolicy", "networking.k8s.io"), ("NetworkPolicy", "extensions"): .networkPolicy
        default: .other
        }
    }

    /// The note for a NetworkPolicy of another apiVersion than networking.k8s.io/v1.
    static func apiVersionNote(_ apiVersion: String, source: String, object: @autoclosure () -> String) -> ManifestIssue? {
        guard apiVersion != "networking.k8s.io/v1" && !apiVersion.isEmpty else { return nil }
        return ManifestIssue(
            severity: .note, source: source, object: object(),
            message: "apiVersion \(apiVersion) is read as networking.k8s.io/v1 (same fields)")
    }

    /// The note for a kind Picket does not read.
    static func skippedNote(source: String, object: String) -> ManifestIssue {
        ManifestIssue(severity: .note, source: source, object: object, message: "skipped: Picket does not read this kind")
    }

    /// How issues name an object: `Kind namespace/name`, `Kind name`, or its location.
    static func objectName(kind: String?, name: String?, namespace: String?, fallback: String) -> String {
        guard let name else { return "\(kind ?? "object") (\(fallback), no metadata.name)" }
        if let namespace { return "\(kind ?? "object") \(namespace)/\(name)" }
        return "\(kind ?? "object") \(name)"
    }

    private static func group(of apiVersion: String) -> String {
        guard let slash = apiVersion.firstIndex(of: "/") else { return "" }
        return String(apiVersion[..<slash])
    }

    private static func objectName(_ node: Yams.Node, kind: String?, fallback: String) -> String {
        let meta = node["metadata"]
        return objectName(kind: kind, name: meta?["name"]?.string, namespace: meta?["namespace"]?.string, fallback: fallback)
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
