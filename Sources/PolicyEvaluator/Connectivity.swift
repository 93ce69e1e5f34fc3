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

/// Flows between endpoint pods whose verdict changed, sorted by destination, traffic and source.
///
/// A pod that is an endpoint in both snapshots is judged in each as it is there. A pod that is an
/// endpoint in one snapshot only is judged in both as it is where it exists (its labels, ports
/// and addresses, and the labels of its namespace there), so that a flow it gains or loses
/// through a policy change is reported: a new pod in a new namespace that a widened policy now
/// admits shows as "now allowed". Flows between two pods present in both states are judged on
/// the snapshots as given.
public func connectivityChanges(before: ClusterSnapshot, after: ClusterSnapshot) -> [ConnectivityChange] {
    let beforePods = Dictionary(before.endpoints.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
    let afterPods = Dictionary(after.endpoints.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
    let onlyBefore = before.endpoints.filter { afterPods[$0.key] == nil }
    let onlyAfter = after.endpoints.filter { beforePods[$0.key] == nil }
    let old = Evaluator(snapshot: before)
    let new = Evaluator(snapshot: after)
    // Both states with the other state's one-sided pods laid in: for flows touching such a pod.
    let oneSided = !onlyBefore.isEmpty || !onlyAfter.isEmpty
    let oldWidened = oneSided ? Evaluator(snapshot: laying(onlyAfter, from: after, into: before)) : old
    let newWidened = oneSided ? Evaluator(snapshot: laying(onlyBefore, from: before, into: after)) : new
    // Every pod once, as it is where it is an endpoint (after wins for pods in both).
    let pods = (after.endpoints + onlyBefore).sorted { $0.key < $1.key }
    let traffic = probeTraffic([before, after])
    var changes: [ConnectivityChange] = []
    for family in IPAddress.Family.allCases {
        let inFamily = pods.filter { pod in
            guard pod.ips.contains(where: { $0.family == family }) else { return false }
            guard let was = beforePods[pod.key], afterPods[pod.key] != nil else { return true }
            return was.ips.contains { $0.family == family }
        }
        for destination in inFamily {
            for source in inFamily where source.key != destination.key {
                let inBoth = beforePods[source.key] != nil && afterPods[source.key] != nil
                    && beforePods[destination.key] != nil && afterPods[destination.key] != nil
                let (was, now) = inBoth ? (old, new) : (oldWidened, newWidened)
                for t in traffic {
                    let flow = Flow(source: .pod(source.key), destination: .pod(destination.key), traffic: t, family: family)
                    guard let wasAllowed = try? was.verdict(flow).allowed, let nowAllowed = try? now.verdict(flow).allowed,
                        wasAllowed != nowAllowed
                    else { continue }
                    changes.append(ConnectivityChange(
                        source: source.key, destination: destination.key, traffic: t, family: family, nowAllowed: nowAllowed))
                }
            }
        }
    }
    return changes.sorted()
}

/// `snapshot` with `pods` (taken from `origin`) added, and the namespaces of those pods given
/// the labels they have in `origin`.
private func laying(_ pods: [Pod], from origin: ClusterSnapshot, into snapshot: ClusterSnapshot) -> ClusterSnapshot {
    var namespaces = snapshot.namespaces
    for pod in pods { namespaces[pod.key.namespace] = origin.namespaces[pod.key.namespace] ?? Namespace(name: pod.key.namespace) }
    return ClusterSnapshot(
        namespaces: namespaces.keys.sorted().map { namespaces[$0]! }, pods: snapshot.pods + pods, policies: snapshot.policies)
}
