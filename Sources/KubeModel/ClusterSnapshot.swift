/// Everything enforcement depends on, at one moment: namespaces, pods and policies, with the
/// indexes the compiler and the evaluator query. A value: build a new one for every change.
public struct ClusterSnapshot: Sendable {
    /// Namespaces by name. A namespace that pods or policies use but that has no object here is
    /// treated as existing with only its automatic `kubernetes.io/metadata.name` label.
    public let namespaces: [String: Namespace]
    /// All pods, sorted by namespace/name.
    public let pods: [Pod]
    /// All policies, validated, sorted by namespace/name.
    public let policies: [Policy]
    /// Pods that policies apply to (`Pod.isPolicyEndpoint`), sorted by namespace/name.
    public let endpoints: [Pod]
    /// Indexes into `endpoints` by namespace.
    public let endpointsByNamespace: [String: [Int]]
    /// Indexes into `policies` by namespace.
    public let policiesByNamespace: [String: [Int]]
    /// Every namespace name known from namespaces, pods and policies, sorted.
    public let namespaceNames: [String]
    /// The labels of each of `namespaceNames`, in the same order.
    let namespaceLabels: [[String: String]]
    /// Whether each of `namespaceNames` is valid (`Validation.errors(of:)`), in the same order.
    let namespaceValid: [Bool]
    /// Whether each of `endpoints` may be a rule's peer: the pod and its namespace are valid.
    /// An invalid pod is still selected (and so isolated) by the policies whose selectors match
    /// its labels as written, but no rule ever admits traffic from or to it as a peer, and no
    /// namespaceSelector ever matches an invalid namespace: invalid input never widens access.
    public let peerEligible: [Bool]

    /// Builds a snapshot; later duplicates of a key replace earlier ones.
    public init(namespaces: [Namespace] = [], pods: [Pod] = [], policies: [Policy] = []) {
        var nsByName: [String: Namespace] = [:]
        for namespace in namespaces { nsByName[namespace.name] = namespace }
        var podByKey: [ObjectKey: Pod] = [:]
        for pod in pods { podByKey[pod.key] = pod }
        var policyByKey: [ObjectKey: Policy] = [:]
        for policy in policies { policyByKey[policy.key] = policy }
        let sortedPods = podByKey.values.sorted { $0.key < $1.key }
        let sortedPolicies = policyByKey.values.sorted { $0.key < $1.key }
        for name in sortedPods.map(\.key.namespace) + sortedPolicies.map(\.key.namespace) where nsByName[name] == nil {
            nsByName[name] = Namespace(name: name)
        }
        let endpoints = sortedPods.filter(\.isPolicyEndpoint)
        var endpointsByNamespace: [String: [Int]] = [:]
        for (i, pod) in endpoints.enumerated() { endpointsByNamespace[pod.key.namespace, default: []].append(i) }
        var policiesByNamespace: [String: [Int]] = [:]
        for (i, policy) in sortedPolicies.enumerated() { policiesByNamespace[policy.key.namespace, default: []].append(i) }
        self.namespaces = nsByName
        self.pods = sortedPods
        self.policies = sortedPolicies
        self.endpoints = endpoints
        self.endpointsByNamespace = endpointsByNamespace
        self.policiesByNamespace = policiesByNamespace
        self.namespaceNames = nsByName.keys.sorted()
        self.namespaceLabels = namespaceNames.map { nsByName[$0]!.labels }
        let namespaceValid = namespaceNames.map { Validation.isValid(nsByName[$0]!) }
        self.namespaceValid = namespaceValid
        var validByName: [String: Bool] = [:]
        for (name, valid) in zip(namespaceNames, namespaceValid) { validByName[name] = valid }
        self.peerEligible = endpoints.map { validByName[$0.key.namespace] == true && Validation.isValid($0) }
    }

    /// Builds a snapshot from objects its caller keeps unique and sorted (namespaces by name,
    /// pods and policies by key) with the validity of each namespace and pod already known
    /// (`Validation.isValid`): the daemon's store, which sorts and validates each object once,
    /// when it arrives, instead of the whole cluster on every sync. The result is the one
    /// `init(namespaces:pods:policies:)` builds from the same objects.
    public init(sorted namespaces: [Namespace], namespaceValid: [Bool], pods: [Pod], podValid: [Bool], policies: [Policy]) {
        precondition(namespaces.count == namespaceValid.count && pods.count == podValid.count)
        var nsByName: [String: Namespace] = [:]
        nsByName.reserveCapacity(namespaces.count)
        var validByName: [String: Bool] = [:]
        for (namespace, valid) in zip(namespaces, namespaceValid) {
            nsByName[namespace.name] = namespace
            validByName[namespace.name] = valid
        }
        // Namespaces used without an object, found at each change of namespace along the sorted
        // pods and policies.
        func imply(_ name: String) {
            if nsByName[name] == nil {
                let namespace = Namespace(name: name)
                nsByName[name] = namespace
                validByName[name] = Validation.isValid(namespace)
            }
        }
        var endpoints: [Pod] = []
        endpoints.reserveCapacity(pods.count)
        var peerEligible: [Bool] = []
        peerEligible.reserveCapacity(pods.count)
        var endpointsByNamespace: [String: [Int]] = [:]
        var current: String?
        var currentValid = false
        var currentIndexes: [Int] = []
        for (pod, valid) in zip(pods, podValid) {
            if pod.key.namespace != current {
                if let current, !currentIndexes.isEmpty { endpointsByNamespace[current] = currentIndexes }
                currentIndexes = []
                current = pod.key.namespace
                imply(pod.key.namespace)
                currentValid = validByName[pod.key.namespace] == true
            }
            guard pod.isPolicyEndpoint else { continue }
            currentIndexes.append(endpoints.count)
            endpoints.append(pod)
            peerEligible.append(currentValid && valid)
        }
        if let current, !currentIndexes.isEmpty { endpointsByNamespace[current] = currentIndexes }
        var policiesByNamespace: [String: [Int]] = [:]
        for (i, policy) in policies.enumerated() {
            if i == 0 || policies[i - 1].key.namespace != policy.key.namespace { imply(policy.key.namespace) }
            policiesByNamespace[policy.key.namespace, default: []].append(i)
        }
        self.namespaces = nsByName
        self.pods = pods
        self.policies = policies
        self.endpoints = endpoints
        self.endpointsByNamespace = endpointsByNamespace
        self.policiesByNamespace = policiesByNamespace
        self.namespaceNames = nsByName.keys.sorted()
        self.namespaceLabels = namespaceNames.map { nsByName[$0]!.labels }
        self.namespaceValid = namespaceNames.map { validByName[$0]! }
        self.peerEligible = peerEligible
    }

    /// The labels of a namespace (its automatic name label at least).
    public func labels(ofNamespace name: String) -> [String: String] {
        namespaces[name]?.labels ?? [Namespace.nameLabel: name]
    }

    /// Endpoint pods of one namespace, sorted by name.
    public func endpoints(inNamespace name: String) -> [Pod] {
        (endpointsByNamespace[name] ?? []).map { endpoints[$0] }
    }

    /// Policies of one namespace, sorted by name.
    public func policies(inNamespace name: String) -> [Policy] {
        (policiesByNamespace[name] ?? []).map { policies[$0] }
    }

    /// Names of the valid namespaces `selector` matches, sorted.
    public func namespaces(matching selector: Selector) -> [String] {
        zip(namespaceNames, namespaceValid).filter { $1 && selector.matches(labels(ofNamespace: $0)) }.map(\.0)
    }

    /// Indexes into `endpoints` of the pods a peer with pod and namespace selectors names, for a
    /// policy in `policyNamespace`; ascending, so in namespace/name order, without repeats.
    /// Only peer-eligible pods (`peerEligible`) are named.
    public func endpointIndexes(matching pods: Selector, inNamespaces namespaces: Selector?, policyNamespace: String) -> [Int] {
        var result: [Int] = []
        func collect(_ name: String) {
            for i in endpointsByNamespace[name] ?? [] where peerEligible[i] && pods.matches(endpoints[i].labels) { result.append(i) }
        }
        if let namespaces {
            for (i, name) in namespaceNames.enumerated() where namespaceValid[i] && namespaces.matches(namespaceLabels[i]) { collect(name) }
        } else {
            collect(policyNamespace)
        }
        return result
    }
}
