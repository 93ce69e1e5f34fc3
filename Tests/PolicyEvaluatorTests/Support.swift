import KubeModel
import PolicyEvaluator
import Testing

// Inputs for the evaluator tests: small `make...` functions plus tweak closures. Expectations in
// the tests are written by hand from the NetworkPolicy API text, never derived from rules.
//
// The default cluster:
//
//   namespace x {team: x}              namespace y {team: y, env: prod}   namespace z {team: z, env: dev}
//   x/a 10.0.1.1 node-a app=a role=web  y/a 10.0.2.1 node-a app=a role=web  z/c 10.0.3.1 node-a app=c
//       ports http/TCP 8080                 ports http/TCP 8080
//   x/b 10.0.1.2 node-b app=b role=db   y/b 10.0.2.2 node-b app=b
//       ports http/TCP 9090, dns/UDP 53
//
//   nodes: node-a 172.16.0.1, node-b 172.16.0.2; outside: 192.0.2.10

/// Parses an address the test knows is valid.
func ip(_ text: String) -> IPAddress {
    guard let address = IPAddress(text) else { preconditionFailure("bad test address \(text)") }
    return address
}

/// The `.pod` endpoint for `ns/name`.
func pod(_ key: String) -> Endpoint {
    let parts = key.split(separator: "/").map(String.init)
    return .pod(ObjectKey(namespace: parts[0], name: parts[1]))
}

/// An object key from `ns/name`.
func key(_ text: String) -> ObjectKey {
    let parts = text.split(separator: "/").map(String.init)
    return ObjectKey(namespace: parts[0], name: parts[1])
}

/// An address outside the cluster.
let outside = Endpoint.address(ip("192.0.2.10"))
/// node-a, as a flow end.
let nodeA = Endpoint.node("node-a", address: ip("172.16.0.1"))
/// node-b, as a flow end.
let nodeB = Endpoint.node("node-b", address: ip("172.16.0.2"))

/// A running pod labelled `app=<name>` on node-a, tweaked.
func makePod(_ ns: String, _ name: String, _ ips: String..., tweak: (inout Pod) -> Void = { _ in }) -> Pod {
    var pod = Pod(namespace: ns, name: name, labels: ["app": name], nodeName: "node-a", ips: ips.map(ip))
    tweak(&pod)
    return pod
}

/// The pods of the default cluster.
func makePods() -> [Pod] {
    [
        makePod("x", "a", "10.0.1.1") {
            $0.labels["role"] = "web"
            $0.ports = [ContainerPort(name: "http", number: 8080)]
        },
        makePod("x", "b", "10.0.1.2") {
            $0.labels["role"] = "db"
            $0.nodeName = "node-b"
            $0.ports = [ContainerPort(name: "http", number: 9090), ContainerPort(name: "dns", number: 53, proto: .udp)]
        },
        makePod("y", "a", "10.0.2.1") {
            $0.labels["role"] = "web"
            $0.ports = [ContainerPort(name: "http", number: 8080)]
        },
        makePod("y", "b", "10.0.2.2") { $0.nodeName = "node-b" },
        makePod("z", "c", "10.0.3.1"),
    ]
}

/// The namespaces of the default cluster.
func makeNamespaces() -> [Namespace] {
    [
        Namespace(name: "x", labels: ["team": "x"]),
        Namespace(name: "y", labels: ["team": "y", "env": "prod"]),
        Namespace(name: "z", labels: ["team": "z", "env": "dev"]),
    ]
}

/// A NetworkPolicy as written (empty spec: `podSelector: {}` and nothing else), tweaked.
func makeNetworkPolicy(_ ns: String, _ name: String, tweak: (inout NetworkPolicy.Spec) -> Void = { _ in }) -> NetworkPolicy {
    var policy = NetworkPolicy(namespace: ns, name: name, spec: NetworkPolicy.Spec())
    tweak(&policy.spec)
    return policy
}

/// A policy validated and defaulted as the API server would.
func makePolicy(_ ns: String, _ name: String, tweak: (inout NetworkPolicy.Spec) -> Void = { _ in }) -> Policy {
    Policy(validating: makeNetworkPolicy(ns, name, tweak: tweak))
}

/// An evaluator for the default cluster plus `policies`, with the pod list tweaked.
func makeEvaluator(_ policies: [Policy] = [], pods tweak: (inout [Pod]) -> Void = { _ in }) -> Evaluator {
    var pods = makePods()
    tweak(&pods)
    let snapshot = ClusterSnapshot(namespaces: makeNamespaces(), pods: pods, policies: policies)
    return Evaluator(snapshot: snapshot, nodeAddresses: ["node-a": [ip("172.16.0.1")], "node-b": [ip("172.16.0.2")]])
}

/// `matchLabels` only.
func labels(_ labels: [String: String]) -> LabelSelector {
    LabelSelector(matchLabels: labels)
}

/// A rule with peers and ports as written.
func rule(_ peers: [NetworkPolicy.Peer]? = nil, ports: [NetworkPolicy.Port]? = nil) -> NetworkPolicy.Rule {
    NetworkPolicy.Rule(peers: peers, ports: ports)
}

/// A numeric port entry.
func port(_ number: Int, _ proto: String? = nil, end: Int? = nil) -> NetworkPolicy.Port {
    NetworkPolicy.Port(protocol: proto, port: .number(number), endPort: end)
}

/// A named port entry.
func port(_ name: String, _ proto: String? = nil) -> NetworkPolicy.Port {
    NetworkPolicy.Port(protocol: proto, port: .name(name))
}

/// An ipBlock peer.
func block(_ cidr: String, except: [String]? = nil) -> NetworkPolicy.Peer {
    NetworkPolicy.Peer(ipBlock: NetworkPolicy.IPBlock(cidr: cidr, except: except))
}

extension Evaluator {
    /// Whether a TCP/80 flow (or `traffic`) from `source` to `destination` is allowed.
    func allows(
        _ source: Endpoint, _ destination: Endpoint, _ traffic: Flow.Traffic = .port(.tcp, 80),
        family: IPAddress.Family? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        do {
            return try verdict(Flow(source: source, destination: destination, traffic: traffic, family: family)).allowed
        } catch {
            Issue.record("\(error)", sourceLocation: sourceLocation)
            return false
        }
    }
}
