import Foundation
import Yams

/// One named cluster, user or context of a kubeconfig file, kept as YAML until a context uses
/// it: a setting Picket cannot use (a proxy, an auth-provider) fails only the contexts that use
/// it, and relative paths are resolved against the directory of the file that defined it.
struct NamedEntry {
    /// The entry's `name`.
    var name: String
    /// Its `cluster`, `user` or `context` mapping; nil when absent or null.
    var body: Node.Mapping?
    /// The file that defined it.
    var file: String
    /// Its place in that file, for messages: `clusters[0].cluster`.
    var path: String

    /// Typed reads of the entry's fields.
    var fields: KubeConfigFields { KubeConfigFields(mapping: body, file: file, path: path) }
}

/// One kubeconfig file, parsed into its named entries.
struct KubeConfigFile {
    /// Where it was read from.
    var path: String
    /// Its `current-context`, if set.
    var currentContext: String?
    /// `clusters`, in file order.
    var clusters: [NamedEntry] = []
    /// `users`, in file order.
    var users: [NamedEntry] = []
    /// `contexts`, in file order.
    var contexts: [NamedEntry] = []

    /// Reads and parses the file at `path`, which must exist.
    static func load(_ path: String) throws(KubeConfigError) -> KubeConfigFile {
        let text: String
        do { text = try FileReader.text(path) } catch { throw unreadable(path, error) }
        return try parse(text, path: path)
    }

    /// Reads and parses the file at `path`; nil when it does not exist.
    static func loadIfPresent(_ path: String) throws(KubeConfigError) -> KubeConfigFile? {
        let text: String
        do {
            text = try FileReader.text(path)
        } catch {
            if error.isMissing { return nil }
            throw unreadable(path, error)
        }
        return try parse(text, path: path)
    }

    /// The error for a file that cannot be read.
    private static func unreadable(_ path: String, _ error: FileReadError) -> KubeConfigError {
        KubeConfigError(code: .unreadable, source: "kubeconfig \(path)", reason: "cannot read: \(error.reason)")
    }

    /// Parses kubeconfig text read from `path`. An empty document is an empty configuration.
    static func parse(_ text: String, path: String) throws(KubeConfigError) -> KubeConfigFile {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw KubeConfigError(code: .notYAML, source: "kubeconfig \(path)", reason: "does not parse as YAML: \(error)")
        }
        var file = KubeConfigFile(path: path)
        guard let root, !KubeConfigFields.isNull(root) else { return file }
        let top = try KubeConfigFields.element(root, file: path, path: "")
        file.currentContext = try top.string("current-context")
        file.clusters = try entries(of: top, list: "clusters", body: "cluster")
        file.users = try entries(of: top, list: "users", body: "user")
        file.contexts = try entries(of: top, list: "contexts", body: "context")
        return file
    }

    /// The `{name, BODY}` items of a top-level list; a name defined twice is an error.
    private static func entries(of top: KubeConfigFields, list: String, body: String) throws(KubeConfigError) -> [NamedEntry] {
        var entries: [NamedEntry] = []
        var seen = Set<String>()
        for (index, node) in try top.sequence(list).enumerated() {
            let item = try KubeConfigFields.element(node, file: top.file, path: "\(list)[\(index)]")
            guard let name = try item.string("name") else { throw item.invalid("name", "is not set") }
            guard seen.insert(name).inserted else { throw item.invalid("name", "\"\(name)\" is defined twice in this file") }
            let mapping = try item.mapping(body)
            entries.append(NamedEntry(name: name, body: mapping?.mapping, file: top.file, path: item.path(of: body)))
        }
        return entries
    }
}

/// Kubeconfig files merged as kubectl merges a `KUBECONFIG` list: for clusters, users and
/// contexts the first file to define a name wins, and `current-context` comes from the first
/// file that sets it.
struct MergedKubeConfig {
    /// For messages: `kubeconfig FILE` or `KUBECONFIG LIST`.
    var source: String
    /// The first `current-context` set.
    var currentContext: String?
    /// Clusters by name.
    var clusters: [String: NamedEntry] = [:]
    /// Users by name.
    var users: [String: NamedEntry] = [:]
    /// Contexts by name.
    var contexts: [String: NamedEntry] = [:]

    /// Merges `files`, earlier files first.
    init(_ files: [KubeConfigFile], source: String) {
        self.source = source
        for file in files {
            if currentContext == nil { currentContext = file.currentContext }
            for entry in file.clusters where clusters[entry.name] == nil { clusters[entry.name] = entry }
            for entry in file.users where users[entry.name] == nil { users[entry.name] = entry }
            for entry in file.contexts where contexts[entry.name] == nil { contexts[entry.name] = entry }
        }
    }
}

/// Typed reads of one YAML mapping's fields, with errors naming the file and the field's path
/// (`users[0].user.client-key-data`). Absent fields, nulls and empty strings read as nil, as Go
/// reads them into zero values.
struct KubeConfigFields {
    /// The mapping; nil reads as empty.
    var mapping: Node.Mapping?
    /// The file it comes from.
    var file: String
    /// Its path in the file; empty for the top level.
    var path: String

    /// The mapping `node` at `path`, or an error when it is not a mapping.
    static func element(_ node: Node, file: String, path: String) throws(KubeConfigError) -> KubeConfigFields {
        guard case .mapping(let mapping) = node else {
            let fields = KubeConfigFields(mapping: nil, file: file, path: path)
            throw KubeConfigError(code: .invalidField, source: fields.source, reason: "\(path.isEmpty ? "the document" : path): is not a mapping")
        }
        return KubeConfigFields(mapping: mapping, file: file, path: path)
    }

    /// Whether a node is YAML's null (`~`, `null`, or nothing).
    static func isNull(_ node: Node) -> Bool {
        node.scalar != nil && node.tag.description == Tag.Name.null.rawValue
    }

    /// `kubeconfig FILE`.
    var source: String { "kubeconfig \(file)" }

    /// The path of field `key`.
    func path(of key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// An error about field `key`.
    func invalid(_ key: String, _ reason: String, code: KubeConfigError.Code = .invalidField) -> KubeConfigError {
        KubeConfigError(code: code, source: source, reason: "\(path(of: key)): \(reason)")
    }

    /// The field's node, unless absent or null.
    func node(_ key: String) -> Node? {
        guard let node = mapping?[key], !Self.isNull(node) else { return nil }
        return node
    }

    /// A string field; empty reads as nil.
    func string(_ key: String) throws(KubeConfigError) -> String? {
        guard let node = node(key) else { return nil }
        guard let scalar = node.scalar else { throw invalid(key, "is not a string") }
        return scalar.string.isEmpty ? nil : scalar.string
    }

    /// A boolean field; absent reads as false.
    func bool(_ key: String) throws(KubeConfigError) -> Bool {
        guard let node = node(key) else { return false }
        guard let value = node.bool else { throw invalid(key, "is not true or false") }
        return value
    }

    /// A base64 field (the `*-data` fields), decoded. Line breaks are ignored, as Go ignores them.
    func base64(_ key: String) throws(KubeConfigError) -> [UInt8]? {
        guard let text = try string(key) else { return nil }
        var joined = String.UnicodeScalarView()
        joined.append(contentsOf: text.unicodeScalars.filter { $0 != "\n" && $0 != "\r" })
        guard let data = Data(base64Encoded: String(joined)) else { throw invalid(key, "is not valid base64") }
        return [UInt8](data)
    }

    /// TLS material from a `*-data` field or, when that is not set, a file path field (kubectl's
    /// precedence).
    func material(data dataKey: String, file fileKey: String) throws(KubeConfigError) -> TLSMaterial? {
        if let bytes = try base64(dataKey) { return .data(bytes) }
        return try filePath(fileKey).map(TLSMaterial.file)
    }

    /// A file path field, resolved against the directory of the file that holds it.
    func filePath(_ key: String) throws(KubeConfigError) -> String? {
        try string(key).map { KubeConfigFields.resolve($0, relativeTo: file) }
    }

    /// A mapping field.
    func mapping(_ key: String) throws(KubeConfigError) -> KubeConfigFields? {
        guard let node = node(key) else { return nil }
        return try Self.element(node, file: file, path: path(of: key))
    }

    /// A list field; absent reads as empty.
    func sequence(_ key: String) throws(KubeConfigError) -> [Node] {
        guard let node = node(key) else { return [] }
        guard let sequence = node.sequence else { throw invalid(key, "is not a list") }
        return Array(sequence)
    }

    /// A list of strings.
    func strings(_ key: String) throws(KubeConfigError) -> [String] {
        var values: [String] = []
        for (index, node) in try sequence(key).enumerated() {
            guard let scalar = node.scalar, !Self.isNull(node) else { throw invalid("\(key)[\(index)]", "is not a string") }
            values.append(scalar.string)
        }
        return values
    }

    /// `path` made absolute against the directory of `file` (itself made absolute against the
    /// working directory), as kubectl resolves a kubeconfig's relative paths.
    static func resolve(_ path: String, relativeTo file: String) -> String {
        if path.hasPrefix("/") { return path }
        let absoluteFile = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
        var components = absoluteFile.split(separator: "/", omittingEmptySubsequences: true).dropLast().map(String.init)
        components += path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        return "/" + components.filter { $0 != "." }.joined(separator: "/")
    }
}
