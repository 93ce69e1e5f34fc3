// NetnsCluster: a two-node cluster built from network namespaces, in the topology of the
// dry-run contract, for proving enforcement with real packets.
//
//   outside netns ("the internet" and the underlay switch)
//     bridge `underlay` 172.18.0.1/24 (fd00:172:18::1/64), external hosts on lo:
//     14.215.0.10 (in the seeds' 14.215.0.0/16), 198.51.100.10 (in no block), fd00:14:215::10
//     routes to each node's pod CIDR via that node's underlay address
//       |                                   |
//   node-a netns: ul0 172.18.0.2            node-b netns: ul0 172.18.0.3
//     kube-bridge 10.244.1.1/24               kube-bridge 10.244.2.1/24
//     (fd00:10:244:1::1/64)                   (fd00:10:244:2::1/64)
//     br_netfilter on, forwarding on          ...
//     route to 10.244.2.0/24 via .3, default via 172.18.0.1
//       |  vpN (port of kube-bridge)
//   pod netns: eth0 = status.podIPs, default route via the bridge address
//
// Same-node pod traffic is bridged (FORWARD once, --physdev-is-bridged), cross-node traffic is
// routed (FORWARD on both nodes), as in FIELD-NOTES. A server answers in every pod, on each node
// (pod-to-node flows meet INPUT) and on the outside host. Rules reach the nodes only through
// the executor (`picket apply` run in each node's namespace), so a cluster that is re-applied
// also proves that the executor converges from one ruleset to the next. Every namespace name
// starts with a prefix unique to this process and cluster (`pkt-<pid>-<n>-`); shutdown deletes
// exactly the namespaces and ends exactly the processes this object created.

import Foundation
import KubeModel
import Synchronization

/// The fixed addressing of one node of the dry-run contract.
struct NodeLayout: Sendable {
    /// spec.nodeName of its pods.
    var name: String
    /// Its IPv4 pod CIDR and bridge (gateway) address.
    var podPrefix4: String, gateway4: String
    /// Its IPv6 pod CIDR and bridge (gateway) address (dual-stack clusters).
    var podPrefix6: String, gateway6: String
    /// Its IPv4 and IPv6 addresses on the underlay.
    var underlay4: String, underlay6: String
    /// Name of its underlay port in the outside namespace (<= 15 characters).
    var underlayPort: String

    /// node-a and node-b.
    static let all: [NodeLayout] = [
        NodeLayout(
            name: "node-a", podPrefix4: "10.244.1.0/24", gateway4: "10.244.1.1",
            podPrefix6: "fd00:10:244:1::/64", gateway6: "fd00:10:244:1::1",
            underlay4: "172.18.0.2", underlay6: "fd00:172:18::2", underlayPort: "ul-node-a"),
        NodeLayout(
            name: "node-b", podPrefix4: "10.244.2.0/24", gateway4: "10.244.2.1",
            podPrefix6: "fd00:10:244:2::/64", gateway6: "fd00:10:244:2::1",
            underlay4: "172.18.0.3", underlay6: "fd00:172:18::3", underlayPort: "ul-node-b"),
    ]

    /// Whether `ip` lies in this node's pod CIDR of its family.
    func owns(_ ip: IPAddress) -> Bool {
        CIDR(ip.family == .v4 ? podPrefix4 : podPrefix6)!.contains(ip)
    }
}

/// The outside host's addresses on the underlay and the external addresses it answers on.
enum OutsideLayout {
    /// Its IPv4 address on the underlay: the nodes' default gateway.
    static let underlay4 = "172.18.0.1"
    /// Its IPv6 address on the underlay.
    static let underlay6 = "fd00:172:18::1"
    /// An external host inside the seeds' ipBlock 14.215.0.0/16.
    static let inBlock4 = IPAddress("14.215.0.10")!
    /// An external host in no block any case names.
    static let elsewhere4 = IPAddress("198.51.100.10")!
    /// An external IPv6 host (dual-stack clusters only).
    static let host6 = IPAddress("fd00:14:215::10")!

    /// The external addresses a cluster has: IPv4 always, IPv6 when dual-stack.
    static func addresses(dualStack: Bool) -> [IPAddress] {
        [inBlock4, elsewhere4] + (dualStack ? [host6] : [])
    }

    /// What the outside server answers with.
    static let serverName = "outside"
}

/// What `picket apply` did on one node.
struct AppliedRules: Sendable {
    /// The node.
    var node: String
    /// What the first `picket apply` printed: the executor's report of what it changed.
    var report: String
    /// What a second `picket apply` of the same manifests printed: `no change` when the first
    /// one converged (the executor reads the kernel back and finds nothing to do).
    var again: String

    /// Whether the second apply found nothing left to change.
    var converged: Bool { again.trimmingCharacters(in: .whitespacesAndNewlines) == "no change" }
}

/// One application of manifests to the whole cluster.
struct ApplyOutcome: Sendable {
    /// The snapshot decoded from the files `picket apply` read (the evaluator's input).
    var snapshot: ClusterSnapshot
    /// Per node, what the executor did.
    var nodes: [AppliedRules]
    /// Wall time of the applies (both rounds, every node) and the state reset.
    var seconds: Double

    /// Nodes whose second apply still changed something, with what it printed.
    var notConverged: [AppliedRules] { nodes.filter { !$0.converged } }
}

/// A cluster of network namespaces with a server in every pod; see the file comment.
final class NetnsCluster: @unchecked Sendable {
    private static let counter = Mutex(0)

    /// Every namespace name of this cluster starts with this.
    let prefix: String
    /// The pods, as given (each scheduled on node-a or node-b, addresses in that node's CIDR).
    let pods: [Pod]
    /// TCP and UDP ports every server listens on.
    let ports: [Int]
    /// Whether any pod has an IPv6 address (then the nodes, underlay and outside get IPv6 too).
    let dualStack: Bool
    /// The node layouts in use.
    let nodes: [NodeLayout]
    /// Network namespace of each node, by node name.
    let nodeNamespace: [String: String]
    /// Network namespace of each pod.
    let podNamespace: [ObjectKey: String]
    /// Network namespace of the outside host.
    let outsideNamespace: String
    /// The python3 interpreter (resolved once: pyenv shims triple the start-up time).
    let python: String
    /// Scratch directory for ready files and server logs.
    let workDir: String

    private let lock = NSLock()
    private var created: [String] = []
    private var servers: [BackgroundProcess] = []
    private var isShutDown = false

    /// Builds the cluster and starts its servers; on any failure removes what it created and
    /// rethrows.
    static func create(pods: [Pod], ports: [Int]) throws -> NetnsCluster {
        let cluster = try NetnsCluster(pods: pods, ports: ports)
        do {
            try cluster.build()
            try cluster.startServers()
        } catch {
            cluster.shutdown()
            throw error
        }
        return cluster
    }

    private init(pods: [Pod], ports: [Int]) throws {
        let n = NetnsCluster.counter.withLock { value in
            value += 1
            return value
        }
        prefix = "pkt-\(getpid())-\(n)-"
        self.pods = pods.sorted { $0.key < $1.key }
        self.ports = Array(Set(ports)).sorted()
        dualStack = pods.contains { $0.ips.contains { $0.family == .v6 } }
        nodes = NodeLayout.all
        var nodeNamespace: [String: String] = [:]
        for node in nodes { nodeNamespace[node.name] = prefix + node.name }
        self.nodeNamespace = nodeNamespace
        var podNamespace: [ObjectKey: String] = [:]
        for pod in pods { podNamespace[pod.key] = prefix + pod.key.namespace + "-" + pod.key.name }
        self.podNamespace = podNamespace
        outsideNamespace = prefix + "outside"
        workDir = NSTemporaryDirectory() + String(prefix.dropLast())
        let found = try Command.run(["python3", "-c", "import sys; print(sys.executable)"])
        python = found.stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        guard Set(podNamespace.values).count == pods.count else {
            throw HarnessError("two pods map to one network namespace name (namespace-name joins are ambiguous): \(pods.map(\.key))")
        }
        for pod in self.pods {
            guard let nodeName = pod.nodeName, let node = nodes.first(where: { $0.name == nodeName }) else {
                throw HarnessError("pod \(pod.key) is on node \(pod.nodeName ?? "(none)"); the cluster has node-a and node-b")
            }
            guard !pod.ips.isEmpty, pod.ips.allSatisfy(node.owns) else {
                throw HarnessError("pod \(pod.key) addresses \(pod.ips) are not in \(node.name)'s pod CIDRs")
            }
        }
    }

    deinit {
        shutdown()
    }

    /// The node layout of a pod.
    func node(of pod: Pod) -> NodeLayout {
        nodes.first { $0.name == pod.nodeName }!
    }

    /// All network namespaces of the cluster: nodes, outside, pods.
    var allNamespaces: [String] {
        nodes.map { nodeNamespace[$0.name]! } + [outsideNamespace] + pods.map { podNamespace[$0.key]! }
    }

    // MARK: - Building

    private func build() throws {
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        let existing = try Command.run(["ip", "netns", "list"]).stdout
        if existing.split(separator: "\n").contains(where: { $0.hasPrefix(prefix) }) {
            throw HarnessError("network namespaces named \(prefix)* already exist; refusing to touch them:\n\(existing)")
        }
        for name in allNamespaces {
            try Command.run(["ip", "netns", "add", name])
            lock.withLock { created.append(name) }
        }

        // Per-namespace sysctls first, so that interfaces created afterwards inherit the defaults.
        // In dual-stack clusters no interface runs duplicate address detection (link-local
        // addresses included): while it runs, the first IPv6 packets of a fresh cluster wait a
        // second or more for neighbour discovery.
        let noDAD = dualStack ? ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"] : []
        try Command.run(["ip", "netns", "exec", outsideNamespace, "sysctl", "-q", "-w",
                         "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                         "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0"] + noDAD)
        for node in nodes {
            try Command.run(["ip", "netns", "exec", nodeNamespace[node.name]!, "sysctl", "-q", "-w",
                             "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                             "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                             "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1"] + noDAD)
        }
        if dualStack {
            for pod in pods {
                try Command.run(["ip", "netns", "exec", podNamespace[pod.key]!, "sysctl", "-q", "-w"] + noDAD)
            }
        }

        // The outside host: underlay switch, external addresses, routes back to the pod CIDRs.
        var outside = ["link set lo up", "link add underlay type bridge", "addr add \(OutsideLayout.underlay4)/24 dev underlay"]
        if dualStack { outside.append("addr add \(OutsideLayout.underlay6)/64 dev underlay nodad") }
        outside.append("link set underlay up")
        for address in OutsideLayout.addresses(dualStack: dualStack) {
            outside.append("addr add \(address)/\(address.family.bitWidth) dev lo")
        }
        for node in nodes {
            outside.append("link add \(node.underlayPort) type veth peer name ul0 netns \(nodeNamespace[node.name]!)")
            outside.append("link set \(node.underlayPort) master underlay up")
        }
        try batch(outsideNamespace, outside)

        for node in nodes {
            var lines = ["link set lo up", "link add kube-bridge type bridge", "addr add \(node.gateway4)/24 dev kube-bridge"]
            if dualStack { lines.append("addr add \(node.gateway6)/64 dev kube-bridge nodad") }
            lines += ["link set kube-bridge up", "addr add \(node.underlay4)/24 dev ul0"]
            if dualStack { lines.append("addr add \(node.underlay6)/64 dev ul0 nodad") }
            lines.append("link set ul0 up")
            for (i, pod) in pods.enumerated() where pod.nodeName == node.name {
                lines.append("link add vp\(i) type veth peer name eth0 netns \(podNamespace[pod.key]!)")
                lines.append("link set vp\(i) master kube-bridge up")
            }
            for other in nodes where other.name != node.name {
                lines.append("route add \(other.podPrefix4) via \(other.underlay4)")
                if dualStack { lines.append("route add \(other.podPrefix6) via \(other.underlay6)") }
            }
            lines.append("route add default via \(OutsideLayout.underlay4)")
            if dualStack { lines.append("route add ::/0 via \(OutsideLayout.underlay6)") }
            try batch(nodeNamespace[node.name]!, lines)
            var routes: [String] = ["route add \(node.podPrefix4) via \(node.underlay4)"]
            if dualStack { routes.append("route add \(node.podPrefix6) via \(node.underlay6)") }
            try batch(outsideNamespace, routes)
        }

        for pod in pods {
            let node = node(of: pod)
            var lines = ["link set lo up"]
            for ip in pod.ips {
                lines.append(ip.family == .v4 ? "addr add \(ip)/24 dev eth0" : "addr add \(ip)/64 dev eth0 nodad")
            }
            lines.append("link set eth0 up")
            lines.append("route add default via \(node.gateway4)")
            if pod.ips.contains(where: { $0.family == .v6 }) { lines.append("route add ::/0 via \(node.gateway6)") }
            try batch(podNamespace[pod.key]!, lines)
        }
    }

    /// Runs `ip -n NAMESPACE -batch -` with `lines`.
    private func batch(_ namespace: String, _ lines: [String]) throws {
        try Command.run(["ip", "-n", namespace, "-batch", "-"], input: lines.joined(separator: "\n") + "\n")
    }

    private func startServers() throws {
        let portList = ports.map(String.init).joined(separator: ",")
        var pending: [(BackgroundProcess, String)] = []
        func start(_ namespace: String, name: String, binds: String) throws {
            let tag = namespace.dropFirst(prefix.count)
            let ready = "\(workDir)/\(tag).ready"
            let server = try BackgroundProcess(
                ["ip", "netns", "exec", namespace, python, "-c", serverScript, name, ready, portList, binds, "600"],
                label: "server in \(namespace)", logPath: "\(workDir)/\(tag).log")
            lock.withLock { servers.append(server) }
            pending.append((server, ready))
        }
        for pod in pods {
            try start(podNamespace[pod.key]!, name: pod.key.description, binds: "::")
        }
        // Each node answers on all of its addresses (pod-to-node flows).
        for node in nodes {
            try start(nodeNamespace[node.name]!, name: node.name, binds: "::")
        }
        // Bound to each external address, so that a UDP reply leaves from the address asked.
        let outsideBinds = OutsideLayout.addresses(dualStack: dualStack).map(\.description).joined(separator: ",")
        try start(outsideNamespace, name: OutsideLayout.serverName, binds: outsideBinds)

        // Bounded wait: 10 s for all servers.
        for _ in 0..<400 {
            if pending.allSatisfy({ FileManager.default.fileExists(atPath: $0.1) }) { return }
            if let dead = pending.first(where: { !$0.0.isRunning }) {
                throw HarnessError("\(dead.0.label) exited before listening:\n\(dead.0.log)")
            }
            usleep(25_000)
        }
        let slow = pending.filter { !FileManager.default.fileExists(atPath: $0.1) }.map(\.0.label)
        throw HarnessError("servers not listening after 10 s: \(slow.joined(separator: ", "))")
    }

    // MARK: - Rules and state

    /// The `picket` executable next to the test bundle (as the dry-run contract tests find it).
    static let picket: String = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The bundle may be a directory (…/picketPackageTests.xctest/…) on some platforms.
        while !FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("picket").path) && dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("picket").path
    }()

    /// Applies `manifests` through the executor, as an operator would: writes them into a
    /// scratch directory and runs `ip netns exec NODE picket apply --node NODE --from DIR` on
    /// each node, then once more to see the executor converged (`no change`); then forgets
    /// connection and neighbour state so that earlier flows cannot slip past the new rules.
    /// The second and later applies on a cluster change its rules in place: the executor goes
    /// from one ruleset to the next.
    func apply(_ manifests: ClusterManifests) throws -> ApplyOutcome {
        let started = Date()
        let given = manifests.pods.sorted { $0.key < $1.key }
        guard given.map(\.key) == pods.map(\.key),
              zip(given, pods).allSatisfy({ $0.nodeName == $1.nodeName && $0.ips == $1.ips })
        else {
            throw HarnessError("the manifests' pods (keys, nodes, addresses) are not the cluster's: \(given.map(\.key)) vs \(pods.map(\.key))")
        }
        let directory = workDir + "/manifests"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try manifests.write(to: directory)
        let snapshot = try ClusterManifests.load(directory)
        var nodes: [AppliedRules] = []
        for node in self.nodes {
            let argv = ["ip", "netns", "exec", nodeNamespace[node.name]!, NetnsCluster.picket, "apply", "--node", node.name, "--from", directory]
                + manifests.applyArguments
                + (manifests.blockUnknownPodIPs ? ["--pod-cidr", node.podPrefix4] + (dualStack ? ["--pod-cidr", node.podPrefix6] : []) : [])
            var rounds: [String] = []
            for _ in 0..<2 {
                do {
                    rounds.append(try Command.run(argv).stdout)
                } catch {
                    var failure = error
                    failure.input = "--- manifests ---\n" + manifests.policyText + "\n"
                    throw failure
                }
            }
            nodes.append(AppliedRules(node: node.name, report: rounds[0], again: rounds[1]))
        }
        try resetConnectionState()
        return ApplyOutcome(snapshot: snapshot, nodes: nodes, seconds: Date().timeIntervalSince(started))
    }

    /// Flushes conntrack (both families) in every node and neighbour caches everywhere.
    func resetConnectionState() throws {
        for node in nodes {
            let namespace = nodeNamespace[node.name]!
            try Command.run(["ip", "netns", "exec", namespace, "conntrack", "-F"])
            try Command.run(["ip", "netns", "exec", namespace, "conntrack", "-F", "-f", "ipv6"])
        }
        for namespace in allNamespaces {
            try Command.run(["ip", "-n", namespace, "neigh", "flush", "all"])
        }
    }

    /// What the kernel of a node's namespace holds now (`iptables-save -c`, `ip6tables-save -c`
    /// when dual-stack, `ipset list`): the packet counters show which rule dropped a flow.
    func kernelState(node: String) -> String {
        let namespace = nodeNamespace[node]!
        var text = ""
        var commands = [["iptables-save", "-c", "-t", "mangle"]]
        if dualStack { commands.append(["ip6tables-save", "-c", "-t", "mangle"]) }
        commands.append(["ipset", "list"])
        for argv in commands {
            do {
                text += try Command.run(["ip", "netns", "exec", namespace] + argv).stdout
            } catch {
                text += "(\(error))\n"
            }
        }
        return text
    }

    // MARK: - Probing

    /// One probe of a batch, as the probe script reads it.
    struct ProbeRequest: Codable, Sendable {
        var dst: String
        var proto: String
        var port: Int
        var src: String?
    }

    /// One probe's outcome, as the probe script prints it.
    struct ProbeResult: Codable, Sendable {
        var ok: Bool
        var answer: String?
        var detail: String?
        var ms: Double?
    }

    /// Runs a batch of probes from inside `namespace` with one python3 process.
    func probe(from namespace: String, _ requests: [ProbeRequest], timeout: Double) throws -> [ProbeResult] {
        struct Request: Codable { var timeout: Double; var probes: [ProbeRequest] }
        let input = String(decoding: try JSONEncoder().encode(Request(timeout: timeout, probes: requests)), as: UTF8.self)
        let output = try Command.run(
            ["ip", "netns", "exec", namespace, python, "-c", probeScript], input: input, timeout: 10 + 3 * timeout)
        let results = try JSONDecoder().decode([ProbeResult].self, from: Data(output.stdout.utf8))
        guard results.count == requests.count else {
            throw HarnessError("probe batch in \(namespace): \(requests.count) probes, \(results.count) results")
        }
        return results
    }

    // MARK: - Teardown

    /// Ends the servers (by PID) and deletes the namespaces this cluster created; returns what
    /// went wrong, if anything (a namespace left behind). Idempotent; also run from deinit.
    @discardableResult
    func shutdown() -> [String] {
        let (servers, created) = lock.withLock { () -> ([BackgroundProcess], [String]) in
            if isShutDown { return ([], []) }
            isShutDown = true
            defer {
                self.servers = []
                self.created = []
            }
            return (self.servers, self.created)
        }
        var problems: [String] = []
        for server in servers {
            server.stop()
            if server.isRunning { problems.append("\(server.label) (pid \(server.pid)) survived SIGKILL") }
        }
        if !created.isEmpty {
            let lines = created.map { "netns delete \($0)" }.joined(separator: "\n") + "\n"
            do {
                try Command.run(["ip", "-force", "-batch", "-"], input: lines)
            } catch {
                problems.append("\(error)")
            }
            do {
                let left = try Command.run(["ip", "netns", "list"]).stdout
                    .split(separator: "\n").filter { $0.hasPrefix(prefix) }
                if !left.isEmpty { problems.append("network namespaces left behind: \(left.joined(separator: ", "))") }
            } catch {
                problems.append("\(error)")
            }
        }
        do {
            if FileManager.default.fileExists(atPath: workDir) { try FileManager.default.removeItem(atPath: workDir) }
        } catch {
            problems.append("cannot remove \(workDir): \(error)")
        }
        for problem in problems { print("KernelTests: teardown of \(prefix)*: \(problem)") }
        return problems
    }
}

/// The harness itself could not do its job (as opposed to a policy not being enforced).
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
