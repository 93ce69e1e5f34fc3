// The cluster state a kernel test applies, as the manifests an operator would hand to
// `picket apply --from DIR`: Namespaces and Pods rendered as JSON (kubectl's shape: metadata,
// spec.nodeName, container ports, status.podIPs), NetworkPolicies as the YAML or JSON text the
// case wrote. The evaluator's snapshot is decoded from the very files the executor reads, so
// both sides of a comparison see the same input.

import Foundation
import KubeModel

/// A JSON value with ordered object keys, rendered deterministically (JSON is YAML too).
indirect enum JSON: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    case string(String)
    case int(Int)
    case array([JSON])
    /// Keys in the order given.
    case object([(String, JSON)])

    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int) { self = .int(value) }
    init(arrayLiteral elements: JSON...) { self = .array(elements) }
    init(dictionaryLiteral elements: (String, JSON)...) { self = .object(elements) }

    /// `{"k": "v", ...}` from a dictionary, keys sorted.
    static func labels(_ labels: [String: String]) -> JSON {
        .object(labels.keys.sorted().map { ($0, .string(labels[$0]!)) })
    }

    /// The value on one line.
    var compact: String {
        switch self {
        case .string(let s): JSON.quote(s)
        case .int(let n): String(n)
        case .array(let items): "[" + items.map(\.compact).joined(separator: ", ") + "]"
        case .object(let pairs): "{" + pairs.map { "\(JSON.quote($0.0)): \($0.1.compact)" }.joined(separator: ", ") + "}"
        }
    }

    /// The value as indented JSON text; values that fit in 72 characters stay on one line.
    func rendered(indent: String = "") -> String {
        let inner = indent + "  "
        let line = compact
        if line.count <= 72 { return line }
        switch self {
        case .string(let s):
            return JSON.quote(s)
        case .int(let n):
            return String(n)
        case .array(let items):
            if items.isEmpty { return "[]" }
            return "[\n" + items.map { inner + $0.rendered(indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        case .object(let pairs):
            if pairs.isEmpty { return "{}" }
            return "{\n" + pairs.map { "\(inner)\(JSON.quote($0.0)): \($0.1.rendered(indent: inner))" }.joined(separator: ",\n") + "\n\(indent)}"
        }
    }

    private static func quote(_ s: String) -> String {
        YAMLToJSON.quoted(s)
    }
}

/// Namespaces, pods and policy documents: one state of the cluster, as manifests.
struct ClusterManifests: Sendable {
    /// The namespaces (their `kubernetes.io/metadata.name` label is set by `Namespace.init`).
    var namespaces: [Namespace]
    /// The pods; the harness's network namespaces must match their keys, nodes and addresses.
    var pods: [Pod]
    /// NetworkPolicy documents, YAML or JSON, each one or more objects.
    var policies: [String]
    /// Pods that exist only in the manifests (no network namespace, never probed): they give
    /// the nodes groups and peers to hold, as a crowded cluster does.
    var phantomPods: [Pod] = []
    /// Extra arguments to `picket apply` (e.g. `--mark-mask`).
    var applyArguments: [String] = []
    /// Pods of the cluster left out of the manifests: their network namespaces exist and answer,
    /// but Picket does not know them (a new pod before any controller has seen it).
    var hiddenPods: Set<ObjectKey> = []
    /// Whether each node is applied with its pod CIDRs (`--pod-cidr`), dropping forwarded
    /// traffic of addresses in them that are no known pod.
    var blockUnknownPodIPs = false

    /// A Namespace object.
    static func manifest(_ namespace: Namespace) -> JSON {
        [
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": ["name": .string(namespace.name), "labels": .labels(namespace.labels)],
        ]
    }

    /// A Pod object: one container holding every container port, status with podIPs.
    static func manifest(_ pod: Pod) -> JSON {
        let ports: [JSON] = pod.ports.map { port in
            var fields: [(String, JSON)] = []
            if let name = port.name { fields.append(("name", .string(name))) }
            fields.append(("containerPort", .int(port.number)))
            fields.append(("protocol", .string(port.proto.rawValue)))
            return .object(fields)
        }
        var spec: [(String, JSON)] = []
        if let node = pod.nodeName { spec.append(("nodeName", .string(node))) }
        spec.append(("containers", [["name": "server", "image": "picket-kernel-test", "ports": .array(ports)]]))
        var status: [(String, JSON)] = []
        if let phase = pod.phase { status.append(("phase", .string(phase))) }
        if let first = pod.ips.first { status.append(("podIP", .string(first.description))) }
        status.append(("podIPs", .array(pod.ips.map { ["ip": .string($0.description)] })))
        return [
            "apiVersion": "v1", "kind": "Pod",
            "metadata": [
                "name": .string(pod.key.name), "namespace": .string(pod.key.namespace), "labels": .labels(pod.labels),
            ],
            "spec": .object(spec),
            "status": .object(status),
        ]
    }

    /// Writes `namespaces.json` (a List), `pods.json` (a List) and `policy-NNN.yaml` per policy
    /// document into `directory`, which must exist and is emptied of manifests first.
    func write(to directory: String) throws {
        let fm = FileManager.default
        for name in try fm.contentsOfDirectory(atPath: directory) where name.hasSuffix(".json") || name.hasSuffix(".yaml") {
            try fm.removeItem(atPath: "\(directory)/\(name)")
        }
        func list(_ items: [JSON]) -> String {
            JSON.object([("apiVersion", "v1"), ("kind", "List"), ("items", .array(items))]).rendered() + "\n"
        }
        try Data(list(namespaces.map(Self.manifest)).utf8).write(to: URL(fileURLWithPath: "\(directory)/namespaces.json"))
        try Data(list((pods.filter { !hiddenPods.contains($0.key) } + phantomPods).map(Self.manifest)).utf8).write(to: URL(fileURLWithPath: "\(directory)/pods.json"))
        for (i, text) in policies.enumerated() {
            let name = String(format: "policy-%03d.yaml", i + 1)
            try Data(text.utf8).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
        }
    }

    /// Reads `directory` back as `picket apply --from DIR` does; throws when any file has an
    /// error (a case's own manifests must be valid).
    static func load(_ directory: String) throws -> ClusterSnapshot {
        let set = ManifestLoader.load([directory])
        let errors = set.issues.filter { $0.severity == .error }
        guard errors.isEmpty else {
            throw HarnessError("the case's own manifests are invalid:\n" + errors.map { "  \($0)" }.joined(separator: "\n"))
        }
        return set.snapshot
    }

    /// Every policy document, joined as one multi-document YAML text (for reports).
    var policyText: String {
        policies.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: "\n---\n")
    }
}
