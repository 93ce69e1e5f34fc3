import KubeModel

/// One (source pod, destination pod, traffic) whose verdict differs between two snapshots.
public struct ConnectivityChange: Hashable, Sendable, Comparable {
    /// The source pod.
    public var source: ObjectKey
    /// The destination pod.
    public var destination: ObjectKey
    /// The protocol and port, or ICMP.
    public var traffic: Flow.Traffic
    /// The address family.
    public var family: IPAddress.Family
    /// Whether the flow is allowed after the change (so it was denied before).
    public var nowAllowed: Bool

    public static func < (lhs: ConnectivityChange, rhs: ConnectivityChange) -> Bool {
        (lhs.destination, order(lhs.traffic), lhs.family, lhs.source) < (rhs.destination, order(rhs.traffic), rhs.family, rhs.source)
    }

    /// ICMP first, then by protocol and port number.
    private static func order(_ traffic: Flow.Traffic) -> Int {
        switch traffic {
        case .icmp: 0
        case .port(let proto, let port): (TransportProtocol.allCases.firstIndex(of: proto)! + 1) << 17 | port
        }
    }
}

/// The traffic worth probing between pods of two snapshots: every container port of every pod
/// and every port or range start a policy names (both snapshots), per protocol, plus ICMP and,
/// per protocol, one port nothing names (standing for "any other port").
public func probeTraffic(_ snapshots: [ClusterSnapshot]) -> [Flow.Traffic] {
    var ports: [TransportProtocol: Set<Int>] = [:]
    for snapshot in snapshots {
        for pod in snapshot.endpoints {
            for port in pod.ports { ports[port.proto, default: []].insert(port.number) }
        }
        for policy in snapshot.policies {
            for rule in policy.ingress + policy.egress {
                for port in rule.ports {
                    if case .range(let first, let last) = port.range {
                        ports[port.proto, default: []].insert(first)
                        if last != first { ports[port.proto, default: []].insert(last) }
                    } else {
                        ports[port.proto, default: []].insert(-1)  // marks the protocol as named
                    }
                }
            }
        }
    }
    var traffic: [Flow.Traffic] = [.icmp]
    for proto in [TransportProtocol.tcp, .udp, .sctp] {
        var numbers = ports[proto, default: []]
        numbers.remove(-1)
        if proto == .sctp && numbers.isEmpty { continue }
        // An unnamed port: the first number from 1 not named by anything.
        var other = 1
        while numbers.contains(other) { other += 1 }
        numbers.insert(other)
        traffic += numbers.sorted().map { .port(proto, $0) }
    }
    return traffic
}

/// Flows between endpoint pods present in both snapshots whose verdict changed, sorted by
/// destination, traffic and source. Pods only in one snapshot are not compared.
public func connectivityChanges(before: ClusterSnapshot, after: ClusterSnapshot) -> [ConnectivityChange] {
    let old = Evaluator(snapshot: before)
    let new = Evaluator(snapshot: after)
    let beforePods = Dictionary(before.endpoints.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
    let pods = after.endpoints.filter { beforePods[$0.key] != nil }
    let traffic = probeTraffic([before, after])
    var changes: [ConnectivityChange] = []
    for family in IPAddress.Family.allCases {
        let inFamily = pods.filter { pod in
            pod.ips.contains { $0.family == family } && beforePods[pod.key]!.ips.contains { $0.family == family }
        }
        for destination in inFamily {
            for source in inFamily where source.key != destination.key {
                for t in traffic {
                    let flow = Flow(source: .pod(source.key), destination: .pod(destination.key), traffic: t, family: family)
                    guard let was = try? old.verdict(flow).allowed, let now = try? new.verdict(flow).allowed, was != now else { continue }
                    changes.append(ConnectivityChange(
                        source: source.key, destination: destination.key, traffic: t, family: family, nowAllowed: now))
                }
            }
        }
    }
    return changes.sorted()
}
