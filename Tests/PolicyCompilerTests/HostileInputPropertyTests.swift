@testable import KubeModel
import Foundation
import PolicyCompiler
import Testing

/// Property tests with hostile strings: random objects whose every string field holds random
/// bytes (newlines, quotes, NUL, invalid UTF-8 decoded lossily, very long) are compiled and
/// rendered, and the output passes the structural check; the same strings written into YAML and
/// JSON manifests decode to errors, never a crash. Deterministic (seeded); a failure names the
/// case's seed.
@Suite struct HostileInputPropertyTests {
    /// Cases per test (1,000 clusters and 2,000 manifests by default); `PICKET_PROPERTY_CASES`
    /// sets both.
    static let override = Int(ProcessInfo.processInfo.environment["PICKET_PROPERTY_CASES"] ?? "")

    @Test("random objects with hostile strings everywhere compile to Picket's lines only")
    func compiledOutputIsSafe() {
        var failures = 0
        for seed in 0..<UInt64(Self.override ?? 1000) {
            var rng = SplitMix64(state: seed &* 0x9E37_79B9 &+ 1)
            let (snapshot, node) = randomCluster(&rng)
            let problems = restoreProblems(compile(snapshot, node: node), node: node)
            if !problems.isEmpty {
                failures += 1
                if failures <= 3 { Issue.record("seed \(seed): \(problems.prefix(3))") }
            }
        }
        #expect(failures == 0)
    }

    @Test("manifests with hostile strings decode to errors, never a crash, and still compile to Picket's lines only")
    func manifestsAreRefused() {
        var failures = 0
        for seed in 0..<UInt64(Self.override ?? 2000) {
            var rng = SplitMix64(state: seed &* 0x2545_F491 &+ 7)
            let text = hostileString(&rng)
            let json = rng.next() % 2 == 0
            let field = Int(rng.next() % 6)
            let manifest = json ? jsonManifest(text, field: field) : yamlManifest(text, field: field)
            let set = ManifestDecoder.decode(manifest, source: "m")
            // Every text here is invalid where it is put (it always holds a character no name,
            // label or port name may hold), so the decoder must say so.
            var problems: [String] = []
            if !set.hasErrors { problems.append("no error reported") }
            for issue in set.issues where issue.description.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
                problems.append("an issue line with control bytes: \(issue.description)")
            }
            problems += restoreProblems(compile(set.snapshot, node: "node-a"), node: "node-a")
            if !problems.isEmpty {
                failures += 1
                if failures <= 3 { Issue.record("seed \(seed) (\(json ? "JSON" : "YAML"), field \(field)): \(problems.prefix(3))\n\(manifest)") }
            }
        }
        #expect(failures == 0)
    }
}

// MARK: - Generators

/// Random bytes, decoded lossily: mostly short, sometimes very long; rich in the bytes restore
/// files care about. Always holds at least one byte no Kubernetes name may hold.
func hostileString(_ rng: inout SplitMix64) -> String {
    let special: [UInt8] = [0x0A, 0x0D, 0x00, 0x22, 0x27, 0x5C, 0x20, 0x09, 0x23, 0x2D, 0x2A, 0x3A, 0x2F, 0xC3, 0xA9, 0xFF, 0xE2, 0x80, 0xAE]
    let length = rng.next() % 10 == 0 ? Int(rng.next() % 5000) : Int(rng.next() % 40)
    var bytes: [UInt8] = []
    for _ in 0..<length {
        switch rng.next() % 4 {
        case 0: bytes.append(special[Int(rng.next() % UInt64(special.count))])
        case 1: bytes.append(UInt8(truncatingIfNeeded: rng.next()))
        default: bytes.append(UInt8(ascii: "a") + UInt8(rng.next() % 26))
        }
    }
    let injections = ["\n-A FORWARD -j ACCEPT\n", "\" -j ACCEPT", "\0", "\r\nCOMMIT\r\n", "'", "\\"]
    let injection = injections[Int(rng.next() % UInt64(injections.count))]
    var text = String(decoding: bytes, as: UTF8.self)
    text.insert(contentsOf: injection, at: text.index(text.startIndex, offsetBy: Int(rng.next() % UInt64(text.count + 1))))
    return text
}

/// A cluster built directly (validation bypassed): hostile strings in every name, namespace,
/// label, selector, port name and the node name.
func randomCluster(_ rng: inout SplitMix64) -> (ClusterSnapshot, node: String) {
    func pick(_ choices: [String]) -> String { choices[Int(rng.next() % UInt64(choices.count))] }
    var strings: [String] = []
    for _ in 0..<4 { strings.append(hostileString(&rng)) }
    func any() -> String { rng.next() % 3 == 0 ? pick(["a", "b", "web"]) : strings[Int(rng.next() % UInt64(strings.count))] }
    let node = any()
    var namespaces: [Namespace] = []
    var pods: [Pod] = []
    for n in 0..<3 {
        let ns = any()
        namespaces.append(Namespace(name: ns, labels: [any(): any()]))
        for p in 0..<3 {
            pods.append(Pod(
                namespace: ns, name: any(), labels: [any(): any(), "app": any()], nodeName: p == 0 ? node : any(),
                ports: [ContainerPort(name: any(), number: 80 + p)], ips: [IPAddress("10.\(n).\(p).1")!, IPAddress("fd00::\(n):\(p)")!]))
        }
    }
    func selector() -> Selector {
        Selector(requirements: [
            Selector.Requirement(key: any(), op: [.in, .notIn, .exists, .doesNotExist][Int(rng.next() % 4)], values: [any(), any()]),
        ])
    }
    var policies: [Policy] = []
    for _ in 0..<3 {
        let rule = Policy.Rule(
            index: 0, peers: [.pods(namespaces: rng.next() % 2 == 0 ? selector() : nil, pods: selector())],
            ports: [Policy.Port(proto: .tcp, range: .named(any())), Policy.Port(proto: .udp, range: .range(53, 53))])
        policies.append(Policy(
            key: ObjectKey(namespace: pods[Int(rng.next() % UInt64(pods.count))].key.namespace, name: any()),
            podSelector: rng.next() % 2 == 0 ? .everything : selector(), isolates: [.ingress, .egress],
            ingress: [rule], egress: [rule]))
        // The same strings through the validating path too.
        policies.append(Policy(validating: NetworkPolicy(
            namespace: any(), name: any(), labels: [any(): any()],
            spec: .init(podSelector: LabelSelector(matchLabels: [any(): any()]), ingress: [.init(
                peers: [.init(podSelector: LabelSelector(matchExpressions: [.init(key: any(), operator: "In", values: [any()])]))],
                ports: [.init(port: .name(any()))])]))))
    }
    return (ClusterSnapshot(namespaces: namespaces, pods: pods, policies: policies), node)
}

/// `text` as a YAML double-quoted scalar (escapes for everything outside printable ASCII).
func yamlQuoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case " "..."~": out.unicodeScalars.append(scalar)
        default:
            let hex = String(scalar.value, radix: 16, uppercase: true)
            out += scalar.value <= 0xFFFF ? "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                : "\\U" + String(repeating: "0", count: 8 - hex.count) + hex
        }
    }
    return out + "\""
}

/// A manifest with `text` in one field: 0 policy name, 1 policy namespace, 2 pod name, 3 pod
/// label value, 4 namespace name, 5 container port name.
func yamlManifest(_ text: String, field: Int) -> String {
    let q = yamlQuoted(text)
    return """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: \(field == 0 ? q : "p"), namespace: \(field == 1 ? q : "shop")}
        spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: \(field == 2 ? q : "web"), namespace: shop, labels: {app: \(field == 3 ? q : "web")}}
        spec: {nodeName: node-a, containers: [{ports: [{name: \(field == 5 ? q : "http"), containerPort: 80}]}]}
        status: {podIP: 10.0.0.1}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: \(field == 4 ? q : "shop")}
        """
}

/// The same as JSON (a List), strings escaped by JSONSerialization.
func jsonManifest(_ text: String, field: Int) -> String {
    func v(_ f: Int, _ plain: String) -> Any { field == f ? text : plain }
    let list: [String: Any] = [
        "apiVersion": "v1", "kind": "List",
        "items": [
            ["apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": ["name": v(0, "p"), "namespace": v(1, "shop")],
             "spec": ["podSelector": [String: Any](), "ingress": [["from": [["podSelector": ["matchLabels": ["app": "web"]]]]]]]],
            ["apiVersion": "v1", "kind": "Pod",
             "metadata": ["name": v(2, "web"), "namespace": "shop", "labels": ["app": v(3, "web")]],
             "spec": ["nodeName": "node-a", "containers": [["ports": [["name": v(5, "http"), "containerPort": 80]]]]],
             "status": ["podIP": "10.0.0.1"]],
            ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": v(4, "shop")]],
        ],
    ]
    let data = try! JSONSerialization.data(withJSONObject: list, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}
