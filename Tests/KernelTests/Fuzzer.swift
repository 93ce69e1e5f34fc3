// Random cluster states for the kernel fuzz test: the x/y/z model's pods and namespaces with
// random labels, named ports and now and then a finished pod, and 1-4 random NetworkPolicies mixing pod and namespace
// selectors (matchLabels and matchExpressions), ipBlocks (pod addresses, node CIDRs, the outside
// hosts, with excepts), port numbers, endPort ranges, named ports, protocol-only entries, SCTP,
// and every form of policyTypes and rule lists. Everything comes from one SplitMix64 seed and no
// other source of randomness (not even the standard library's `random(in:using:)`, whose
// algorithm may change), so a seed names a case forever.

import KubeModel

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014):
/// the state advances by the golden gamma and each output is the state, mixed.
struct SplitMix64: Sendable {
    private(set) var state: UInt64

    /// A generator starting at `seed`.
    init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in 0..<bound (bound > 0), by multiply-high (bias below 2^-40 for our bounds).
    mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0)
        return Int(next().multipliedFullWidth(by: UInt64(bound)).high)
    }

    /// True with probability `percent`/100.
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

    /// One element of a non-empty array.
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

    /// A number in `range`.
    mutating func int(in range: ClosedRange<Int>) -> Int { range.lowerBound + below(range.count) }
}

/// Generates one fuzz case per seed.
struct Fuzzer {
    /// Whether pods get IPv6 addresses too (ipBlocks of both families are drawn).
    var dualStack = false

    private static let podValues: [String: [String]] = ["pod": ["a", "b", "c"], "app": ["web", "db"], "tier": ["front", "back"]]
    private static let namespaceValues: [String: [String]] = [
        "ns": ["x", "y", "z"], "env": ["prod", "dev"], "team": ["red", "blue"], Namespace.nameLabel: ["x", "y", "z"],
    ]

    /// The cluster state of `seed`.
    func manifests(seed: UInt64) -> ClusterManifests {
        var rng = SplitMix64(seed: seed)
        var pods = UpstreamModel.pods(dualStack: dualStack)
        for i in pods.indices {
            var labels: [String: String] = [:]
            for key in ["pod", "app", "tier"] where rng.chance(key == "pod" ? 85 : 55) {
                labels[key] = rng.pick(Self.podValues[key]!)
            }
            pods[i].labels = labels
            pods[i].ports = randomPorts(&rng)
        }
        // Sometimes a pod has finished (still answering here): never selected, never a pod peer,
        // only its address counts; or is Pending with an address, which changes nothing.
        if rng.chance(15) { pods[rng.below(pods.count)].phase = rng.pick(["Succeeded", "Failed", "Pending"]) }
        let namespaces = UpstreamModel.namespaceNames.map { name in
            var labels: [String: String] = [:]
            if rng.chance(80) { labels["ns"] = rng.pick(Self.namespaceValues["ns"]!) }
            if rng.chance(60) { labels["env"] = rng.pick(Self.namespaceValues["env"]!) }
            if rng.chance(40) { labels["team"] = rng.pick(Self.namespaceValues["team"]!) }
            return Namespace(name: name, labels: labels)
        }
        let count = rng.int(in: 1...4)
        let policies = (0..<count).map { policy(index: $0, &rng).rendered() + "\n" }
        return ClusterManifests(namespaces: namespaces, pods: pods, policies: policies)
    }

    /// Named container ports: serve-<port>-<proto> usually, `web` (TCP) and `dns` (UDP) on 80
    /// or 81 depending on the pod, so one name means different numbers on different pods.
    private func randomPorts(_ rng: inout SplitMix64) -> [ContainerPort] {
        var ports: [ContainerPort] = []
        for number in [80, 81] {
            for proto in [TransportProtocol.tcp, .udp] where rng.chance(80) {
                ports.append(ContainerPort(name: "serve-\(number)-\(proto.lowercased)", number: number, proto: proto))
            }
            ports.append(ContainerPort(name: "serve-\(number)-sctp", number: number, proto: .sctp))
        }
        if rng.chance(70) { ports.append(ContainerPort(name: "web", number: rng.pick([80, 81]), proto: .tcp)) }
        if rng.chance(50) { ports.append(ContainerPort(name: "dns", number: rng.pick([80, 81]), proto: .udp)) }
        return ports
    }

    private func policy(index: Int, _ rng: inout SplitMix64) -> JSON {
        var spec: [(String, JSON)] = [("podSelector", selector(Self.podValues, &rng))]
        for field in ["ingress", "egress"] {
            let roll = rng.below(100)
            if roll < 30 { continue }  // absent
            if roll < 45 {
                spec.append((field, []))
            } else {
                spec.append((field, .array((0..<rng.int(in: 1...2)).map { _ in rule(peersField: field == "ingress" ? "from" : "to", &rng) })))
            }
        }
        switch rng.below(4) {
        case 0: break  // defaulted
        case 1: spec.append(("policyTypes", ["Ingress"]))
        case 2: spec.append(("policyTypes", ["Egress"]))
        default: spec.append(("policyTypes", ["Ingress", "Egress"]))
        }
        return [
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": ["name": .string("fuzz-\(index + 1)"), "namespace": .string(rng.pick(UpstreamModel.namespaceNames))],
            "spec": .object(spec),
        ]
    }

    /// An empty selector, matchLabels, matchExpressions (In, NotIn, Exists, DoesNotExist), or both.
    private func selector(_ vocabulary: [String: [String]], _ rng: inout SplitMix64) -> JSON {
        let keys = vocabulary.keys.sorted()
        let roll = rng.below(100)
        if roll < 25 { return [:] }
        var fields: [(String, JSON)] = []
        if roll < 60 || rng.chance(25) {
            var labels: [String: String] = [:]
            for _ in 0..<rng.int(in: 1...2) {
                let key = rng.pick(keys)
                labels[key] = rng.pick(vocabulary[key]!)
            }
            fields.append(("matchLabels", .labels(labels)))
        }
        if roll >= 60 {
            let expressions: [JSON] = (0..<rng.int(in: 1...2)).map { _ in
                let key = rng.pick(keys)
                let values = vocabulary[key]!
                switch rng.below(4) {
                case 0, 1:
                    let chosen = (0..<rng.int(in: 1...2)).map { _ in rng.pick(values) }
                    var unique: [String] = []
                    for value in chosen where !unique.contains(value) { unique.append(value) }
                    return ["key": .string(key), "operator": rng.chance(50) ? "In" : "NotIn", "values": .array(unique.map { .string($0) })]
                case 2:
                    return ["key": .string(key), "operator": "Exists"]
                default:
                    return ["key": .string(key), "operator": "DoesNotExist"]
                }
            }
            fields.append(("matchExpressions", .array(expressions)))
        }
        return .object(fields)
    }

    private func rule(peersField: String, _ rng: inout SplitMix64) -> JSON {
        if rng.chance(15) { return [:] }
        var fields: [(String, JSON)] = []
        if rng.chance(65) {
            fields.append((peersField, .array((0..<rng.int(in: 1...3)).map { _ in peer(&rng) })))
        }
        if rng.chance(60) {
            fields.append(("ports", .array((0..<rng.int(in: 1...2)).map { _ in port(&rng) })))
        }
        return .object(fields)
    }

    private func peer(_ rng: inout SplitMix64) -> JSON {
        let roll = rng.below(100)
        if roll < 30 { return ["podSelector": selector(Self.podValues, &rng)] }
        if roll < 50 { return ["namespaceSelector": selector(Self.namespaceValues, &rng)] }
        if roll < 70 {
            return ["namespaceSelector": selector(Self.namespaceValues, &rng), "podSelector": selector(Self.podValues, &rng)]
        }
        let family: IPAddress.Family = dualStack && rng.chance(40) ? .v6 : .v4
        let (cidr, except) = block(family, &rng)
        var fields: [(String, JSON)] = [("cidr", .string(cidr))]
        if !except.isEmpty { fields.append(("except", .array(except.map { .string($0) }))) }
        return ["ipBlock": .object(fields)]
    }

    /// A block: around a pod, a node's pod CIDR, the cluster, the outside hosts, the underlay,
    /// everything; with excepts strictly inside it.
    private func block(_ family: IPAddress.Family, _ rng: inout SplitMix64) -> (String, [String]) {
        let pod = UpstreamModel.placement.map(\.0)
        func host(_ key: String) -> String { UpstreamModel.hostCIDR(UpstreamModel.address(key, family)) }
        let randomPod = rng.pick(pod)
        if family == .v6 {
            switch rng.below(8) {
            case 0: return (host(randomPod), [])
            case 1: return ("fd00:10:244:1::/64", [])
            case 2: return ("fd00:10:244::/48", [host(randomPod)])
            case 3: return ("fd00:14:215::/48", [])
            case 4: return ("::/0", ["fd00:14:215::/48"])
            case 5: return ("fd00:172:18::/64", [])
            case 6: return ("::/0", [])
            default: return (UpstreamModel.largeCIDR(around: UpstreamModel.address(randomPod, .v6)), [host(randomPod)])
            }
        }
        switch rng.below(12) {
        case 0: return (host(randomPod), [])
        case 1: return ("10.244.1.0/24", [])
        case 2: return ("10.244.2.0/24", rng.chance(50) ? [host(rng.pick(["x/c", "y/a", "y/c", "z/b"]))] : [])
        case 3: return ("10.244.0.0/16", [rng.chance(50) ? host(randomPod) : "10.244.2.0/25"])
        case 4: return ("10.244.1.8/29", [])
        case 5: return ("14.215.0.0/16", [])
        case 6: return ("0.0.0.0/0", ["14.215.0.0/16"])
        case 7: return ("198.51.100.0/24", [])
        case 8: return ("172.18.0.0/24", [])
        case 9: return ("0.0.0.0/0", [])
        case 10: return ("10.0.0.0/8", ["10.244.1.0/24", host(rng.pick(["x/c", "y/a", "y/c", "z/b"]))])
        default: return (UpstreamModel.largeCIDR(around: UpstreamModel.address(randomPod, .v4)), [host(randomPod)])
        }
    }

    private func port(_ rng: inout SplitMix64) -> JSON {
        switch rng.below(14) {
        case 0: return ["port": .int(rng.pick([80, 81]))]
        case 1: return ["protocol": "UDP", "port": .int(rng.pick([80, 81]))]
        case 2: return ["protocol": .string(rng.pick(["TCP", "UDP"])), "port": 80, "endPort": 81]
        case 3: return ["protocol": .string(rng.pick(["TCP", "UDP"])), "port": 81, "endPort": 1000]
        case 4: return ["protocol": .string(rng.pick(["TCP", "UDP"])), "port": 1, "endPort": 80]
        case 5: return ["protocol": "SCTP", "port": .int(rng.pick([80, 81]))]
        case 6: return ["protocol": .string(rng.pick(["TCP", "UDP", "SCTP"]))]
        case 7: return ["port": .string(rng.pick(["serve-80-tcp", "serve-81-tcp"]))]
        case 8: return ["protocol": "UDP", "port": .string(rng.pick(["serve-80-udp", "serve-81-udp"]))]
        case 9: return ["port": "web"]
        case 10: return ["protocol": "UDP", "port": "dns"]
        case 11: return ["protocol": .string(rng.pick(["TCP", "UDP"])), "port": .string(rng.pick(["dns", "web", "serve-80-udp"]))]
        case 12: return ["port": "nope"]
        default: return ["protocol": "TCP", "port": 82, "endPort": 90]
        }
    }
}
