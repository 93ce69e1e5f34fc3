import KubeModel

// Synthetic clusters for the compile benchmark.
//
// Design note: the generator is deterministic (its own SplitMix64, fixed seed; no Foundation or
// system randomness), so every run of the benchmark compiles byte-identical clusters and numbers
// from two machines or two commits compare. The shape follows what real clusters look like:
// namespaces of 20-100 pods owned by teams, apps of 1-8 replicas with app/tier/team labels and
// named container ports, a few shared system namespaces (kube-system with CoreDNS, an ingress
// controller, Prometheus), and a policy mix dominated by namespace-scoped app-to-app rules, with
// namespaceSelector peers, cross-namespace namespaceSelector+podSelector peers, ipBlocks with
// except, named ports, and egress policies that allow DNS to kube-system. The scheduler is
// modelled as a seeded shuffle: pods land on nodes at random, exactly 110 per node, so node-0
// hosts pods of many namespaces, as it would in a real cluster.

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, well-mixed 64-bit generator.
struct SplitMix64: RandomNumberGenerator {
    /// The generator's state; the seed.
    var state: UInt64

    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in `0..<bound` (the modulo bias is below 2^-40 for the bounds used here).
    mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        return Int(next() % UInt64(bound))
    }

    /// A number in `range`.
    mutating func inRange(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + below(range.count)
    }

    /// One element of a non-empty array.
    mutating func pick<T>(_ items: [T]) -> T {
        items[below(items.count)]
    }

    /// True with probability `percent`/100.
    mutating func percent(_ percent: Int) -> Bool {
        below(100) < percent
    }

    /// Fisher-Yates, driven by this generator only.
    mutating func shuffle<T>(_ items: inout [T]) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, to: 0, by: -1) {
            items.swapAt(i, below(i + 1))
        }
    }
}

/// One benchmark size: how many pods and policies the synthetic cluster has.
struct ClusterSize: Sendable {
    /// The label used on the command line and in the output (`1k`, `10k`, `50k`).
    var label: String
    /// Pods in the cluster, system namespaces included.
    var pods: Int
    /// NetworkPolicies in the cluster.
    var policies: Int
    /// Compile runs when `--runs` is not given.
    var defaultRuns: Int

    /// The sizes of the issue: 1k/100, 10k/2k, 50k/10k.
    static let all: [ClusterSize] = [
        ClusterSize(label: "1k", pods: 1_000, policies: 100, defaultRuns: 9),
        ClusterSize(label: "10k", pods: 10_000, policies: 2_000, defaultRuns: 7),
        ClusterSize(label: "50k", pods: 50_000, policies: 10_000, defaultRuns: 5),
    ]
}

/// A generated cluster: the objects, before they become a `ClusterSnapshot`.
struct SyntheticCluster {
    /// Every namespace, system ones first.
    var namespaces: [Namespace]
    /// Every pod.
    var pods: [Pod]
    /// Every policy, validated through `Policy(validating:)`.
    var policies: [Policy]
    /// The same policies as written (for exporting the cluster as manifests).
    var writtenPolicies: [NetworkPolicy]
    /// Policies whose validation reported errors (a generator bug if non-zero).
    var invalidPolicies: Int
    /// Nodes the pods were spread over.
    var nodeCount: Int

    /// The node the benchmark compiles for.
    static let benchNode = "node-0"
    /// The kubelet default the issue asks for.
    static let podsPerNode = 110
    /// The generator's fixed seed.
    static let seed: UInt64 = 0x5049_434B_4554_2042 // "PICKET B"
}

/// Builds synthetic clusters; see the design note at the top of this file.
struct ClusterGenerator {
    private var rng: SplitMix64

    /// A generator seeded with `seed`; the same seed and size always give the same cluster.
    init(seed: UInt64 = SyntheticCluster.seed) {
        rng = SplitMix64(state: seed)
    }

    /// An application: a Deployment-like group of identical pods in one namespace.
    private struct App {
        var namespace: String
        var name: String
        var tier: Tier
        var team: String
        var replicas: Int
        var extraLabels: [String: String] = [:]
    }

    /// The tier of an app; decides its labels and container ports.
    private enum Tier: String, CaseIterable {
        case frontend, backend, db, cache, worker

        /// Named container ports the app's pods declare.
        var ports: [ContainerPort] {
            switch self {
            case .frontend: [ContainerPort(name: "http", number: 8080), ContainerPort(name: "metrics", number: 9090)]
            case .backend:
                [ContainerPort(name: "http", number: 8080), ContainerPort(name: "grpc", number: 9000),
                 ContainerPort(name: "metrics", number: 9090)]
            case .db: [ContainerPort(name: "db", number: 5432), ContainerPort(name: "metrics", number: 9187)]
            case .cache: [ContainerPort(name: "redis", number: 6379), ContainerPort(name: "metrics", number: 9121)]
            case .worker: [ContainerPort(name: "metrics", number: 9090)]
            }
        }
    }

    private static let appNames: [(String, Tier)] = [
        ("web", .frontend), ("ui", .frontend), ("gateway", .frontend),
        ("api", .backend), ("auth", .backend), ("search", .backend), ("orders", .backend),
        ("ledger", .backend), ("profile", .backend), ("notify", .backend),
        ("postgres", .db), ("mysql", .db), ("redis", .cache), ("memcached", .cache),
        ("worker", .worker), ("cron", .worker), ("consumer", .worker),
    ]
    private static let namespaceWords = [
        "payments", "checkout", "catalog", "identity", "billing", "analytics", "search", "ads",
        "mail", "media", "risk", "shipping", "support", "inventory", "pricing", "reviews",
    ]

    /// Generates a cluster of `size`.
    mutating func cluster(_ size: ClusterSize) -> SyntheticCluster {
        var namespaces: [Namespace] = []
        var apps: [App] = []

        // System namespaces: DNS, the ingress controller and monitoring, as peers of many policies.
        namespaces.append(Namespace(name: "kube-system"))
        apps.append(App(namespace: "kube-system", name: "coredns", tier: .backend, team: "platform", replicas: 2,
                        extraLabels: ["k8s-app": "kube-dns"]))
        apps.append(App(namespace: "kube-system", name: "metrics-server", tier: .backend, team: "platform", replicas: 1))
        namespaces.append(Namespace(name: "ingress-nginx", labels: ["team": "platform"]))
        apps.append(App(namespace: "ingress-nginx", name: "ingress-nginx", tier: .frontend, team: "platform", replicas: 3,
                        extraLabels: ["app.kubernetes.io/name": "ingress-nginx"]))
        namespaces.append(Namespace(name: "monitoring", labels: ["team": "platform"]))
        apps.append(App(namespace: "monitoring", name: "prometheus", tier: .backend, team: "platform", replicas: 2))
        apps.append(App(namespace: "monitoring", name: "grafana", tier: .frontend, team: "platform", replicas: 1))
        let systemPods = apps.reduce(0) { $0 + $1.replicas }

        // User namespaces of 20-100 pods, split into apps of 1-8 replicas.
        var remaining = size.pods - systemPods
        var userNamespaces: [(name: String, apps: [App])] = []
        let teamCount = max(3, size.pods / 400)
        var index = 0
        while remaining > 0 {
            var podCount = rng.inRange(20...100)
            if remaining - podCount < 20 { podCount = remaining }
            remaining -= podCount
            let name = "\(rng.pick(Self.namespaceWords))-\(index)"
            let team = "team-\(rng.below(teamCount))"
            let env = rng.percent(60) ? "prod" : (rng.percent(60) ? "staging" : "dev")
            namespaces.append(Namespace(name: name, labels: ["team": team, "env": env]))
            var nsApps: [App] = []
            var used: [String: Int] = [:]
            var left = podCount
            while left > 0 {
                let (base, tier) = rng.pick(Self.appNames)
                let replicas = min(left, rng.pick([1, 2, 2, 3, 3, 3, 4, 5, 6, 8]))
                let n = used[base, default: 0]
                used[base] = n + 1
                nsApps.append(App(namespace: name, name: n == 0 ? base : "\(base)-\(n)", tier: tier, team: team, replicas: replicas))
                left -= replicas
            }
            apps += nsApps
            userNamespaces.append((name, nsApps))
            index += 1
        }

        // Pods, then a shuffle that stands for the scheduler: slot i is node i/110, address i%110.
        var pending: [(app: App, ordinal: Int)] = []
        for app in apps {
            for ordinal in 0..<app.replicas { pending.append((app, ordinal)) }
        }
        var slots = Array(0..<pending.count)
        rng.shuffle(&slots)
        var pods: [Pod] = []
        pods.reserveCapacity(pending.count)
        for (i, (app, ordinal)) in pending.enumerated() {
            let slot = slots[i]
            let node = slot / SyntheticCluster.podsPerNode
            // 10.N.N.2-111: one /24 per node (N up to 65535), like a node podCIDR.
            let address = IPAddress(family: .v4, value: UInt128(10 << 24 | node << 8 | (slot % SyntheticCluster.podsPerNode + 2)))
            let hash = String(rng.next() & 0xFF_FFFF_FFFF, radix: 16)
            var labels = ["app": app.name, "tier": app.tier.rawValue, "team": app.team, "pod-template-hash": hash]
            labels.merge(app.extraLabels) { _, new in new }
            if rng.percent(20) { labels["version"] = rng.pick(["v1", "v2", "canary"]) }
            // A few completed job pods: no longer policy endpoints.
            let phase = app.tier == .worker && rng.percent(5) ? "Succeeded" : "Running"
            pods.append(Pod(
                namespace: app.namespace, name: "\(app.name)-\(hash)-\(ordinal)", labels: labels,
                nodeName: "node-\(node)", ports: app.tier.ports, ips: [address], phase: phase))
        }
        let nodeCount = (pending.count + SyntheticCluster.podsPerNode - 1) / SyntheticCluster.podsPerNode

        // Policies, in namespaces chosen in proportion to their pod count.
        let userPodNamespaces = userNamespaces.indices.flatMap { i in
            Array(repeating: i, count: userNamespaces[i].apps.reduce(0) { $0 + $1.replicas })
        }
        let teams = (0..<teamCount).map { "team-\($0)" }
        var defaultDeny = Set<String>()
        var policies: [Policy] = []
        var writtenPolicies: [NetworkPolicy] = []
        var invalid = 0
        for i in 0..<size.policies {
            let (nsName, nsApps) = userNamespaces[rng.pick(userPodNamespaces)]
            let written = policy(number: i, namespace: nsName, apps: nsApps, teams: teams, defaultDeny: &defaultDeny)
            let validated = Policy(validating: written)
            if !validated.errors.isEmpty { invalid += 1 }
            policies.append(validated)
            writtenPolicies.append(written)
        }
        return SyntheticCluster(
            namespaces: namespaces, pods: pods, policies: policies, writtenPolicies: writtenPolicies, invalidPolicies: invalid,
            nodeCount: nodeCount)
    }

    // MARK: - Policies

    private func app(_ name: String) -> LabelSelector { LabelSelector(matchLabels: ["app": name]) }

    private static let dnsPeer = NetworkPolicy.Peer(
        podSelector: LabelSelector(matchLabels: ["k8s-app": "kube-dns"]),
        namespaceSelector: LabelSelector(matchLabels: [Namespace.nameLabel: "kube-system"]))
    private static let dnsPorts = [
        NetworkPolicy.Port(protocol: "UDP", port: .number(53)), NetworkPolicy.Port(protocol: "TCP", port: .number(53)),
    ]

    /// One policy of a realistic mix (percentages of all policies):
    /// 5 default-deny, 35 app-to-app, 10 tier-to-tier on named ports, 10 namespaceSelector peers,
    /// 10 cross-namespace namespaceSelector+podSelector, 8 ipBlock with except, 17 egress with
    /// DNS to kube-system, 5 allow-same-namespace.
    private mutating func policy(
        number i: Int, namespace: String, apps: [App], teams: [String], defaultDeny: inout Set<String>
    ) -> NetworkPolicy {
        typealias NP = NetworkPolicy
        let target = rng.pick(apps)
        var roll = rng.below(100)
        if roll < 5 && defaultDeny.contains(namespace) { roll = 5 }
        let name: String
        var spec: NP.Spec
        switch roll {
        case 0..<5:
            defaultDeny.insert(namespace)
            name = "default-deny"
            let both = rng.percent(30)
            spec = NP.Spec(podSelector: LabelSelector(), policyTypes: both ? ["Ingress", "Egress"] : ["Ingress"],
                           egress: both ? [NP.Rule(peers: [Self.dnsPeer], ports: Self.dnsPorts)] : nil)
        case 5..<40:
            // Same-namespace app-to-app: one or two client apps, a numbered or a named port.
            name = "allow-\(target.name)-from-apps-\(i)"
            var peers = [NP.Peer(podSelector: app(rng.pick(apps).name))]
            if rng.percent(40) { peers.append(NP.Peer(podSelector: app(rng.pick(apps).name))) }
            let ports: [NP.Port] = switch rng.below(4) {
            case 0: [NP.Port(port: .name("http"))]
            case 1: [NP.Port(port: .number(8080)), NP.Port(port: .number(9000))]
            case 2: [NP.Port(port: .number(8000), endPort: 8100)]
            default: [NP.Port(port: .number(8080))]
            }
            spec = NP.Spec(podSelector: app(target.name), policyTypes: ["Ingress"], ingress: [NP.Rule(peers: peers, ports: ports)])
        case 40..<50:
            // Tier-to-tier on the tier's named port; the second rule lets a web tier in on any port.
            name = "allow-tier-\(target.tier.rawValue)-\(i)"
            let (to, from, port): (String, String, String) = switch target.tier {
            case .db: ("db", "backend", "db")
            case .cache: ("cache", "backend", "redis")
            case .backend: ("backend", "frontend", "grpc")
            case .frontend, .worker: ("frontend", "frontend", "http")
            }
            var rules = [NP.Rule(peers: [NP.Peer(podSelector: LabelSelector(matchLabels: ["tier": from]))], ports: [NP.Port(port: .name(port))])]
            if rng.percent(30) { rules.append(NP.Rule(peers: [NP.Peer(podSelector: LabelSelector(matchLabels: ["tier": "frontend"]))])) }
            spec = NP.Spec(podSelector: LabelSelector(matchLabels: ["tier": to]), ingress: rules)
        case 50..<60:
            // Whole namespaces as peers: mostly the team's own namespaces, rarely every prod one.
            name = "allow-\(target.name)-from-namespaces-\(i)"
            let selector = rng.percent(85)
                ? LabelSelector(matchLabels: ["team": rng.percent(70) ? target.team : rng.pick(teams)])
                : LabelSelector(matchLabels: ["env": "prod"])
            spec = NP.Spec(
                podSelector: LabelSelector(matchExpressions: [.init(key: "tier", operator: "In", values: ["frontend", "backend"])]),
                ingress: [NP.Rule(peers: [NP.Peer(namespaceSelector: selector)], ports: [NP.Port(port: .name("http"))])])
            if rng.percent(50) { spec.podSelector = app(target.name) }
        case 60..<70:
            // Cross-namespace pods: the ingress controller to frontends, Prometheus to metrics.
            if rng.percent(50) {
                name = "allow-ingress-controller-\(i)"
                let peer = NP.Peer(
                    podSelector: LabelSelector(matchLabels: ["app.kubernetes.io/name": "ingress-nginx"]),
                    namespaceSelector: LabelSelector(matchLabels: [Namespace.nameLabel: "ingress-nginx"]))
                spec = NP.Spec(podSelector: LabelSelector(matchLabels: ["tier": "frontend"]),
                               ingress: [NP.Rule(peers: [peer], ports: [NP.Port(port: .name("http"))])])
            } else {
                name = "allow-prometheus-\(i)"
                let peer = NP.Peer(
                    podSelector: LabelSelector(matchLabels: ["app": "prometheus"]),
                    namespaceSelector: LabelSelector(matchLabels: ["team": "platform"]))
                spec = NP.Spec(podSelector: rng.percent(50) ? LabelSelector() : app(target.name),
                               ingress: [NP.Rule(peers: [peer], ports: [NP.Port(port: .name("metrics"))])])
            }
        case 70..<78:
            if rng.percent(50) {
                // Office and load-balancer ranges in, minus a quarantined subnet.
                name = "allow-\(target.name)-from-cidrs-\(i)"
                let peers = [
                    NP.Peer(ipBlock: NP.IPBlock(cidr: "192.168.0.0/16", except: ["192.168.100.0/24", "192.168.200.0/24"])),
                    NP.Peer(ipBlock: NP.IPBlock(cidr: "10.0.0.0/8", except: ["10.\(rng.below(2)).0.0/16"])),
                ]
                spec = NP.Spec(podSelector: app(target.name), ingress: [NP.Rule(peers: peers, ports: [NP.Port(port: .number(443))])])
            } else {
                // Internet egress: everything but private ranges, plus DNS.
                name = "allow-\(target.name)-internet-egress-\(i)"
                let internet = NP.Peer(ipBlock: NP.IPBlock(
                    cidr: "0.0.0.0/0", except: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]))
                spec = NP.Spec(podSelector: app(target.name), policyTypes: ["Egress"], egress: [
                    NP.Rule(peers: [Self.dnsPeer], ports: Self.dnsPorts),
                    NP.Rule(peers: [internet], ports: [NP.Port(port: .number(443))]),
                ])
            }
        case 78..<95:
            // Egress: DNS to kube-system, then the app's dependencies by label and named port.
            name = "egress-\(target.name)-\(i)"
            var rules = [NP.Rule(peers: [Self.dnsPeer], ports: Self.dnsPorts)]
            if rng.percent(50) {
                rules.append(NP.Rule(peers: [NP.Peer(podSelector: LabelSelector(matchLabels: ["tier": "db"]))], ports: [NP.Port(port: .name("db"))]))
            } else {
                rules.append(NP.Rule(peers: [NP.Peer(podSelector: app(rng.pick(apps).name))], ports: [NP.Port(port: .number(8080))]))
            }
            if rng.percent(25) {
                rules.append(NP.Rule(peers: [NP.Peer(podSelector: LabelSelector(matchLabels: ["tier": "cache"]))], ports: [NP.Port(port: .name("redis"))]))
            }
            spec = NP.Spec(podSelector: app(target.name), policyTypes: ["Egress"], egress: rules)
        default:
            name = "allow-same-namespace-\(i)"
            spec = NP.Spec(podSelector: LabelSelector(), policyTypes: ["Ingress"], ingress: [NP.Rule(peers: [NP.Peer(podSelector: LabelSelector())])])
        }
        return NetworkPolicy(namespace: namespace, name: name, spec: spec)
    }
}
