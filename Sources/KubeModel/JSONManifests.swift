// JSON manifests: Namespaces, Pods and NetworkPolicies projected straight from JSON bytes.
//
// Design note: the same objects, issues and messages as the YAML path (`Manifests.swift`), at
// hundreds of MB/s. Each object is read in one pass: the fields Picket keeps are decoded as they
// come, everything else is skipped (and validated) by `JSONReader`. Only when `spec` or `status`
// comes before `kind` (and no List names the item's kind) is it skipped and read once the kind
// is known; a List whose `items`
// precede its `kind` (kubectl sorts keys) is decoded on the assumption that it is a List, and
// read again only if an item lacks its own `kind`. A type error in a kept field fails that
// object alone (as `field: message`, the first one in the order the YAML path would find it:
// metadata, spec, status); a syntax error fails the whole top-level value. Decoded objects enter
// the set through `ManifestSet.admit`, like YAML ones. API responses (`APIResponses.swift`) read
// objects with the same code (`readObjectParts`, `ObjectParts.assemble`), with `forAPI` adding
// what only they need: metadata.resourceVersion and uid, and Nodes.
//
// Accepted input: one or more top-level JSON values (a kubectl object, a `List`/`PodList`/...,
// or a stream of objects as `kubectl get -w -o json` prints), each an object or `null`.
// Duplicate keys behave as in Go's encoding/json (which Kubernetes clients use): a later scalar
// or array replaces an earlier one, a later object is merged into the earlier one field by field.

/// Where an object is in its input, for issues about objects without a name: `document 2` or
/// `document 1 items[7]`. Rendered only when an issue needs it.
struct JSONLocation: CustomStringConvertible {
    /// The document, or the List the object is an item of.
    var parent: String
    /// The index in the List's items.
    var item: Int?

    var description: String { item.map { "\(parent) items[\($0)]" } ?? parent }
}

/// One step of a field path: a key or an index.
enum JSONPathItem {
    case key(String)
    case index(Int)
}

extension ManifestDecoder {
    /// Decodes JSON bytes (a file, an API response): every top-level value in turn. A syntax
    /// error ends the input; the values before it are kept, the one it is in is dropped.
    public static func decodeJSON(_ bytes: UnsafeRawBufferPointer, source: String) -> ManifestSet {
        var reader = JSONReader(bytes)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { reader.position = 3 }
        var set = ManifestSet()
        var index = 0
        do throws(JSONSyntaxError) {
            while !reader.isAtEnd() {
                index += 1
                var document = ManifestSet()
                try reader.decodeManifest(location: JSONLocation(parent: "document \(index)"), inferredKind: nil, source: source, into: &document)
                set.append(contentsOf: document)
            }
        } catch {
            set.issues.append(ManifestIssue(severity: .error, source: source, message: "does not parse: \(error)"))
        }
        return set
    }
}

// MARK: - objects

/// Where a `spec` or `status` value starts, and the kind it was read as (nil: skipped).
struct SectionRecord {
    var isSpec: Bool
    var offset: Int
    var readAs: String?
}

/// The sections of one object: two inline (the usual spec and status), more in an array.
struct SectionRecords {
    var first: SectionRecord?
    var second: SectionRecord?
    var more: [SectionRecord] = []

    mutating func append(_ record: SectionRecord) {
        if first == nil { first = record } else if second == nil { second = record } else { more.append(record) }
    }

    /// The records read as another kind than `kind` (or skipped), in input order; usually none,
    /// and then nothing is allocated.
    func all(readOtherThan kind: String) -> [SectionRecord] {
        func stale(_ record: SectionRecord?) -> Bool { record.map { $0.readAs != kind } ?? false }
        guard stale(first) || stale(second) || more.contains(where: { $0.readAs != kind }) else { return [] }
        return ([first, second].compactMap { $0 } + more).filter { $0.readAs != kind }
    }
}

/// The parts of `metadata` Picket reads, as found.
struct MetaParts {
    var present = false
    var name: String?
    var namespace: String?
    var labels: [String: String] = [:]
    /// metadata.resourceVersion (read for API responses only).
    var resourceVersion: String?
    /// metadata.uid (read for API responses only).
    var uid: String?
    var failure: FieldError?
}

/// The parts of a Pod's spec and status Picket reads, as found.
struct PodParts {
    var nodeName: String?
    var hostNetwork: Bool?
    var containerPorts: [Pod.WrittenPort] = []
    var initContainerPorts: [Pod.WrittenPort] = []
    var phase: String?
    var podIP: String?
    var podIPs: [String]?
    var specFailure: FieldError?
    var statusFailure: FieldError?
}

/// The parts of a Node's spec and status Picket reads, as found (API responses only).
struct NodeParts {
    var podCIDR: String?
    var podCIDRs: [String]?
    var addresses: [Node.WrittenAddress] = []
    var specFailure: FieldError?
    var statusFailure: FieldError?
}

/// What one pass over an object found: its kind and apiVersion as written, and the parts of
/// metadata, spec and status of the kind they were read as.
struct ObjectParts {
    var kind: String?
    var apiVersion: String?
    var meta = MetaParts()
    var pod = PodParts()
    var node = NodeParts()
    var policySpec: NetworkPolicy.Spec?
    var policyFailure: FieldError?
    var sections = SectionRecords()
    /// The reader's depth inside the object (to read a section again).
    var innerDepth: Int
    /// Whether the fields only API responses need are read: metadata.resourceVersion and
    /// metadata.uid, a Node's spec and status. Manifest files leave them unread (and so cannot
    /// fail on them).
    var forAPI: Bool

    /// Reads a spec or status value as `kind` (by kind alone: apiVersion may come later, and
    /// decides only whether the object is kept); kinds Picket does not read are skipped.
    mutating func readSection(_ reader: inout JSONReader, isSpec: Bool, kind: String) throws(JSONSyntaxError) {
        let name = isSpec ? "spec" : "status"
        switch kind {
        case "Pod" where isSpec:
            let failure = try reader.section(name) { r throws(JSONSyntaxError) in try r.podSpec(into: &pod) }
            if pod.specFailure == nil { pod.specFailure = failure }
        case "Pod":
            let failure = try reader.section(name) { r throws(JSONSyntaxError) in try r.podStatus(into: &pod) }
            if pod.statusFailure == nil { pod.statusFailure = failure }
        case "NetworkPolicy" where isSpec:
            let failure = try reader.section(name) { r throws(JSONSyntaxError) in
                var spec = policySpec ?? NetworkPolicy.Spec()
                if try r.policySpec(into: &spec) { policySpec = spec }
            }
            if policyFailure == nil { policyFailure = failure }
        case "Node" where isSpec && forAPI:
            let failure = try reader.section(name) { r throws(JSONSyntaxError) in try r.nodeSpec(into: &node) }
            if node.specFailure == nil { node.specFailure = failure }
        case "Node" where forAPI:
            let failure = try reader.section(name) { r throws(JSONSyntaxError) in try r.nodeStatus(into: &node) }
            if node.statusFailure == nil { node.statusFailure = failure }
        default:
            try reader.skipValue()
        }
    }

    /// How issues name the object, read as `kind`.
    func objectName(kind: String?, location: JSONLocation) -> String {
        ManifestDecoder.objectName(kind: kind, name: meta.name, namespace: meta.namespace, fallback: location.description)
    }

    /// The first failure of metadata: missing, a field of the wrong type, or no name.
    var metadataFailure: FieldError? {
        guard meta.present else { return FieldError(field: "metadata", reason: "is required but missing") }
        return meta.failure ?? (meta.name == nil ? FieldError(field: "metadata.name", reason: "is required but missing") : nil)
    }

    /// The object read as `kind`, or the first field failure in the order the YAML path would
    /// find it (metadata, spec, status); nil for kinds Picket does not read (and for Nodes
    /// outside API responses).
    func assemble(as kind: ManifestDecoder.Kind) -> Result<ManifestObject, FieldError>? {
        switch kind {
        case .namespace:
            if let failure = metadataFailure { return .failure(failure) }
            return .success(.namespace(Namespace(name: meta.name!, labels: meta.labels)))
        case .pod:
            if let failure = metadataFailure ?? pod.specFailure ?? pod.statusFailure { return .failure(failure) }
            return .success(.pod(Pod.assemble(
                meta: ObjectMeta(name: meta.name!, namespace: meta.namespace, labels: meta.labels),
                nodeName: pod.nodeName, hostNetwork: pod.hostNetwork, ports: pod.containerPorts + pod.initContainerPorts,
                podIPs: pod.podIPs, podIP: pod.podIP, phase: pod.phase)))
        case .networkPolicy:
            if let failure = metadataFailure ?? policyFailure { return .failure(failure) }
            return .success(.networkPolicy(NetworkPolicy(
                namespace: meta.namespace ?? "default", name: meta.name!, spec: policySpec ?? NetworkPolicy.Spec())))
        case .node where forAPI:
            if let failure = metadataFailure ?? node.specFailure ?? node.statusFailure { return .failure(failure) }
            return .success(.node(Node.assemble(
                meta: ObjectMeta(name: meta.name!, labels: meta.labels),
                podCIDRs: node.podCIDRs, podCIDR: node.podCIDR, addresses: node.addresses)))
        case .node, .other:
            return nil
        }
    }
}

extension JSONReader {
    /// Reads the object at the position in one pass: kind, apiVersion, metadata, and spec and
    /// status as the kind known so far (its own `kind` if it came first, else `inferredKind`,
    /// the kind of the List it is an item of); `items` is called at an `items` key with the
    /// object's own kind so far, and must consume the value. Sections read as another kind than
    /// the object turns out to have are read again by `rereadSections`.
    mutating func readObjectParts(
        inferredKind: String?, forAPI: Bool, items: (inout JSONReader, String?) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) -> ObjectParts {
        var parts = ObjectParts(innerDepth: depth + 1, forAPI: forAPI)
        try readObject { r, key throws(JSONSyntaxError) in
            if key.is("kind") {
                parts.kind = try r.lenientString()
            } else if key.is("apiVersion") {
                parts.apiVersion = try r.lenientString()
            } else if key.is("metadata") {
                let failure = try r.section("metadata") { r throws(JSONSyntaxError) in try r.metadata(into: &parts.meta, forAPI: forAPI) }
                if parts.meta.failure == nil { parts.meta.failure = failure }
            } else if key.is("spec") || key.is("status") {
                // Read as the kind known so far (an item of a typed List: the List's); read again
                // by `rereadSections` if `kind` turns out to be another one.
                let isSpec = key.is("spec")
                let readAs = parts.kind ?? inferredKind
                parts.sections.append(SectionRecord(isSpec: isSpec, offset: r.position, readAs: readAs))
                if let readAs {
                    try parts.readSection(&r, isSpec: isSpec, kind: readAs)
                } else {
                    try r.skipValue()
                }
            } else if key.is("items") {
                try items(&r, parts.kind)
            } else {
                try r.skipValue()
            }
        }
        return parts
    }

    /// Reads again, as `kind`, the sections of `parts` that were read as another kind or skipped
    /// (the object's `kind` came after them). The reader must be just past the object.
    func rereadSections(of parts: inout ObjectParts, as kind: String) throws(JSONSyntaxError) {
        for record in parts.sections.all(readOtherThan: kind) {
            var again = self
            again.position = record.offset
            again.depth = parts.innerDepth
            try parts.readSection(&again, isSpec: record.isSpec, kind: kind)
        }
    }

    /// Decodes the object at the position (an item of a List when `inferredKind` is set) into
    /// `set`. Returns whether the object named its own `kind`.
    @discardableResult
    mutating func decodeManifest(
        location: JSONLocation, inferredKind: String?, level: Int = 0, source: String, into set: inout ManifestSet
    ) throws(JSONSyntaxError) -> Bool {
        switch try peekType() {
        case .object:
            break
        case .null:  // an empty document or item, as in YAML
            try readNull()
            return false
        default:
            set.issues.append(ManifestIssue(severity: .error, source: source, object: location.description, message: "is not an object (a mapping)"))
            try skipValue()
            return false
        }
        var itemsOffset: Int?
        var items: ManifestSet?  // decoded before `kind` was known, on the assumption of a List
        var itemsComplete = true  // every item of `items` named its kind

        var parts = try readObjectParts(inferredKind: inferredKind, forAPI: false) { r, kind throws(JSONSyntaxError) in
            itemsOffset = r.position
            items = nil
            if let kind, !kind.hasSuffix("List") { return try r.skipValue() }
            guard try r.peekType() == .array, level < Self.maxListNesting else { return try r.skipValue() }
            // Decoded now, whether or not `kind` is known yet (kubectl puts it after `items`).
            let listKind = kind
            let itemKind = listKind.flatMap { $0 == "List" ? nil : String($0.dropLast(4)) }
            var decoded = ManifestSet()
            var complete = true
            let listLocation = location.description
            try r.readArray { r, i throws(JSONSyntaxError) in
                if try r.peekType() == .null { return try r.readNull() }
                let named = try r.decodeManifest(
                    location: JSONLocation(parent: listLocation, item: i), inferredKind: itemKind, level: level + 1, source: source, into: &decoded)
                if !named && listKind == nil { complete = false }
            }
            items = decoded
            itemsComplete = complete
        }

        let kind = parts.kind
        let kindOrInferred = kind ?? inferredKind
        var object: String { parts.objectName(kind: kindOrInferred, location: location) }
        guard let kindOrInferred else {
            set.issues.append(ManifestIssue(severity: .error, source: source, object: location.description, field: "kind", message: "is missing"))
            return false
        }
        if kindOrInferred.hasSuffix("List"), let itemsOffset {
            if level >= Self.maxListNesting {
                set.issues.append(ManifestIssue(
                    severity: .error, source: source, object: object, field: "items",
                    message: "is not read: Lists nested more than \(Self.maxListNesting) deep"))
            } else if let items, itemsComplete {
                set.append(contentsOf: items)
            } else {
                var again = self
                again.position = itemsOffset
                again.depth = parts.innerDepth
                guard try again.peekType() == .array else {
                    set.issues.append(ManifestIssue(severity: .error, source: source, object: object, field: "items", message: "is not a list"))
                    return kind != nil
                }
                // Typed lists from the API (PodList) may omit kind on their items.
                let itemKind = kindOrInferred == "List" ? nil : String(kindOrInferred.dropLast(4))
                let listLocation = location.description
                try again.readArray { r, i throws(JSONSyntaxError) in
                    try r.decodeManifest(
                        location: JSONLocation(parent: listLocation, item: i), inferredKind: itemKind, level: level + 1, source: source, into: &set)
                }
            }
            return kind != nil
        }
        try rereadSections(of: &parts, as: kindOrInferred)

        let classified = ManifestDecoder.classify(kind: kindOrInferred, apiVersion: parts.apiVersion ?? "")
        if classified == .networkPolicy,
           let note = ManifestDecoder.apiVersionNote(parts.apiVersion ?? "", source: source, object: object) {
            set.issues.append(note)
        }
        switch parts.assemble(as: classified) {
        case .success(let decoded)?:
            set.admit(decoded, source: source)
        case .failure(let failure)?:
            set.issues.append(ManifestIssue(severity: .error, source: source, object: object, field: failure.field, message: failure.reason))
        case nil:
            // Kinds Picket does not read; Nodes too: only API responses carry them.
            set.issues.append(ManifestDecoder.skippedNote(source: source, object: object))
        }
        return kind != nil
    }

    /// How deep Lists may be nested in Lists (each level is a recursion of `decodeManifest`).
    static let maxListNesting = 16

    /// metadata: name, namespace, labels (merged into `meta`, as duplicate keys are); with
    /// `forAPI`, resourceVersion and uid too.
    mutating func metadata(into meta: inout MetaParts, forAPI: Bool) throws(JSONSyntaxError) {
        let present = try object { r, key throws(JSONSyntaxError) in
            if key.is("name") {
                if let name = try r.at("name", { r throws(JSONSyntaxError) in try r.requiredString() }) { meta.name = name }
            } else if key.is("namespace") {
                meta.namespace = try r.at("namespace") { r throws(JSONSyntaxError) in try r.optionalString() }
            } else if key.is("labels") {
                try r.at("labels") { r throws(JSONSyntaxError) in try r.stringMap(into: &meta.labels) }
            } else if forAPI && key.is("resourceVersion") {
                meta.resourceVersion = try r.at("resourceVersion") { r throws(JSONSyntaxError) in try r.optionalString() }
            } else if forAPI && key.is("uid") {
                meta.uid = try r.at("uid") { r throws(JSONSyntaxError) in try r.optionalString() }
            } else {
                try r.skipValue()
            }
        }
        if present { meta.present = true }
    }

    /// A Pod's spec: nodeName, hostNetwork, containers[].ports[], initContainers[].ports[].
    mutating func podSpec(into pod: inout PodParts) throws(JSONSyntaxError) {
        try object { r, key throws(JSONSyntaxError) in
            if key.is("nodeName") {
                pod.nodeName = try r.at("nodeName") { r throws(JSONSyntaxError) in try r.optionalString() }
            } else if key.is("hostNetwork") {
                pod.hostNetwork = try r.at("hostNetwork") { r throws(JSONSyntaxError) in try r.optionalBool() }
            } else if key.is("containers") {
                pod.containerPorts = try r.at("containers") { r throws(JSONSyntaxError) in try r.containerPorts(list: "containers") }
            } else if key.is("initContainers") {
                pod.initContainerPorts = try r.at("initContainers") { r throws(JSONSyntaxError) in try r.containerPorts(list: "initContainers") }
            } else {
                try r.skipValue()
            }
        }
    }

    /// The ports of every container of a containers list, in order.
    private mutating func containerPorts(list: String) throws(JSONSyntaxError) -> [Pod.WrittenPort] {
        var ports: [Pod.WrittenPort] = []
        try array { r, c throws(JSONSyntaxError) in
            var containerPorts: [Pod.WrittenPort] = []
            try r.requiredObject { r, key throws(JSONSyntaxError) in
                guard key.is("ports") else { return try r.skipValue() }
                containerPorts = []
                try r.at("ports") { r throws(JSONSyntaxError) in
                    try r.array { r, p throws(JSONSyntaxError) in
                        var name: String?
                        var number: Int?
                        var proto: String?
                        let present = try r.requiredObject { r, key throws(JSONSyntaxError) in
                            if key.is("name") {
                                name = try r.at("name") { r throws(JSONSyntaxError) in try r.optionalString() }
                            } else if key.is("containerPort") {
                                number = try r.at("containerPort") { r throws(JSONSyntaxError) in try r.requiredInt() }
                            } else if key.is("protocol") {
                                proto = try r.at("protocol") { r throws(JSONSyntaxError) in try r.optionalString() }
                            } else {
                                try r.skipValue()
                            }
                        }
                        guard present else { return }
                        if let number {
                            containerPorts.append(Pod.WrittenPort(
                                name: name, number: number, protocol: proto, field: "spec.\(list)[\(c)].ports[\(p)]"))
                        } else {
                            r.missing("containerPort")
                        }
                    }
                }
            }
            ports += containerPorts
        }
        return ports
    }

    /// A Pod's status: phase, podIP, podIPs[].ip.
    mutating func podStatus(into pod: inout PodParts) throws(JSONSyntaxError) {
        try object { r, key throws(JSONSyntaxError) in
            if key.is("phase") {
                pod.phase = try r.at("phase") { r throws(JSONSyntaxError) in try r.optionalString() }
            } else if key.is("podIP") {
                pod.podIP = try r.at("podIP") { r throws(JSONSyntaxError) in try r.optionalString() }
            } else if key.is("podIPs") {
                var ips: [String] = []
                let present = try r.at("podIPs") { r throws(JSONSyntaxError) in
                    try r.array { r, _ throws(JSONSyntaxError) in
                        var ip: String?
                        guard try r.requiredObject({ r, key throws(JSONSyntaxError) in
                            guard key.is("ip") else { return try r.skipValue() }
                            ip = try r.at("ip") { r throws(JSONSyntaxError) in try r.requiredString() }
                        }) else { return }
                        if let ip { ips.append(ip) } else { r.missing("ip") }
                    }
                }
                pod.podIPs = present ? ips : nil
            } else {
                try r.skipValue()
            }
        }
    }

    // MARK: Node

    /// A Node's spec: podCIDR, podCIDRs[].
    mutating func nodeSpec(into node: inout NodeParts) throws(JSONSyntaxError) {
        try object { r, key throws(JSONSyntaxError) in
            if key.is("podCIDR") {
                node.podCIDR = try r.at("podCIDR") { r throws(JSONSyntaxError) in try r.optionalString() }
            } else if key.is("podCIDRs") {
                node.podCIDRs = try r.at("podCIDRs") { r throws(JSONSyntaxError) in try r.stringArray() }
            } else {
                try r.skipValue()
            }
        }
    }

    /// A Node's status: addresses[] (type and address, both required).
    mutating func nodeStatus(into node: inout NodeParts) throws(JSONSyntaxError) {
        try object { r, key throws(JSONSyntaxError) in
            guard key.is("addresses") else { return try r.skipValue() }
            var addresses: [Node.WrittenAddress] = []
            try r.at("addresses") { r throws(JSONSyntaxError) in
                try r.array { r, i throws(JSONSyntaxError) in
                    var type: String?
                    var address: String?
                    guard try r.requiredObject({ r, key throws(JSONSyntaxError) in
                        if key.is("type") {
                            type = try r.at("type") { r throws(JSONSyntaxError) in try r.requiredString() }
                        } else if key.is("address") {
                            address = try r.at("address") { r throws(JSONSyntaxError) in try r.requiredString() }
                        } else {
                            try r.skipValue()
                        }
                    }) else { return }
                    guard let type else { return r.missing("type") }
                    guard let address else { return r.missing("address") }
                    addresses.append(Node.WrittenAddress(type: type, address: address, field: "status.addresses[\(i)]"))
                }
            }
            node.addresses = addresses
        }
    }

    // MARK: NetworkPolicy

    /// A NetworkPolicy's spec as written; false when it is null.
    mutating func policySpec(into spec: inout NetworkPolicy.Spec) throws(JSONSyntaxError) -> Bool {
        try object { r, key throws(JSONSyntaxError) in
            if key.is("podSelector") {
                spec.podSelector = try r.at("podSelector") { r throws(JSONSyntaxError) in try r.labelSelector() } ?? LabelSelector()
            } else if key.is("policyTypes") {
                spec.policyTypes = try r.at("policyTypes") { r throws(JSONSyntaxError) in try r.stringArray() }
            } else if key.is("ingress") {
                spec.ingress = try r.at("ingress") { r throws(JSONSyntaxError) in try r.rules(peers: "from") }
            } else if key.is("egress") {
                spec.egress = try r.at("egress") { r throws(JSONSyntaxError) in try r.rules(peers: "to") }
            } else {
                try r.skipValue()
            }
        }
    }

    private mutating func rules(peers peersKey: StaticString) throws(JSONSyntaxError) -> [NetworkPolicy.Rule]? {
        var rules: [NetworkPolicy.Rule] = []
        let present = try array { r, _ throws(JSONSyntaxError) in
            var rule = NetworkPolicy.Rule()
            guard try r.requiredObject({ r, key throws(JSONSyntaxError) in
                if key.is(peersKey) {
                    rule.peers = try r.at(peersKey.description) { r throws(JSONSyntaxError) in try r.list { r throws(JSONSyntaxError) in try r.peer() } }
                } else if key.is("ports") {
                    rule.ports = try r.at("ports") { r throws(JSONSyntaxError) in try r.list { r throws(JSONSyntaxError) in try r.policyPort() } }
                } else {
                    try r.skipValue()
                }
            }) else { return }
            rules.append(rule)
        }
        return present ? rules : nil
    }

    private mutating func peer() throws(JSONSyntaxError) -> NetworkPolicy.Peer? {
        var peer = NetworkPolicy.Peer()
        guard try requiredObject({ r, key throws(JSONSyntaxError) in
            if key.is("podSelector") {
                peer.podSelector = try r.at("podSelector") { r throws(JSONSyntaxError) in try r.labelSelector() }
            } else if key.is("namespaceSelector") {
                peer.namespaceSelector = try r.at("namespaceSelector") { r throws(JSONSyntaxError) in try r.labelSelector() }
            } else if key.is("ipBlock") {
                peer.ipBlock = try r.at("ipBlock") { r throws(JSONSyntaxError) in try r.ipBlock() }
            } else {
                try r.skipValue()
            }
        }) else { return nil }
        return peer
    }

    private mutating func ipBlock() throws(JSONSyntaxError) -> NetworkPolicy.IPBlock? {
        var cidr: String?
        var except: [String]?
        guard try object({ r, key throws(JSONSyntaxError) in
            if key.is("cidr") {
                cidr = try r.at("cidr") { r throws(JSONSyntaxError) in try r.requiredString() }
            } else if key.is("except") {
                except = try r.at("except") { r throws(JSONSyntaxError) in try r.stringArray() }
            } else {
                try r.skipValue()
            }
        }) else { return nil }
        guard let cidr else {
            missing("cidr")
            return nil
        }
        return NetworkPolicy.IPBlock(cidr: cidr, except: except)
    }

    private mutating func policyPort() throws(JSONSyntaxError) -> NetworkPolicy.Port? {
        var port = NetworkPolicy.Port()
        guard try requiredObject({ r, key throws(JSONSyntaxError) in
            if key.is("protocol") {
                port.protocol = try r.at("protocol") { r throws(JSONSyntaxError) in try r.optionalString() }
            } else if key.is("port") {
                port.port = try r.at("port") { r throws(JSONSyntaxError) in try r.intOrString() }
            } else if key.is("endPort") {
                port.endPort = try r.at("endPort") { r throws(JSONSyntaxError) in try r.optionalInt() }
            } else {
                try r.skipValue()
            }
        }) else { return nil }
        return port
    }

    private mutating func intOrString() throws(JSONSyntaxError) -> NetworkPolicy.PortValue? {
        switch try peekType() {
        case .number: return try optionalInt().map { .number($0) }
        case .string: return .name(try readString())
        case .null: try readNull(); return nil
        default:
            fail("has the wrong type, expected Int or String")
            try skipValue()
            return nil
        }
    }

    private mutating func labelSelector() throws(JSONSyntaxError) -> LabelSelector? {
        var selector = LabelSelector()
        guard try object({ r, key throws(JSONSyntaxError) in
            if key.is("matchLabels") {
                var labels: [String: String] = selector.matchLabels ?? [:]
                let present = try r.at("matchLabels") { r throws(JSONSyntaxError) in try r.stringMap(into: &labels) }
                selector.matchLabels = present ? labels : nil
            } else if key.is("matchExpressions") {
                selector.matchExpressions = try r.at("matchExpressions") { r throws(JSONSyntaxError) in
                    try r.list { r throws(JSONSyntaxError) in try r.expression() }
                }
            } else {
                try r.skipValue()
            }
        }) else { return nil }
        return selector
    }

    private mutating func expression() throws(JSONSyntaxError) -> LabelSelector.Expression? {
        var keyValue: String?
        var op: String?
        var values: [String]?
        guard try requiredObject({ r, key throws(JSONSyntaxError) in
            if key.is("key") {
                keyValue = try r.at("key") { r throws(JSONSyntaxError) in try r.requiredString() }
            } else if key.is("operator") {
                op = try r.at("operator") { r throws(JSONSyntaxError) in try r.requiredString() }
            } else if key.is("values") {
                values = try r.at("values") { r throws(JSONSyntaxError) in try r.stringArray() }
            } else {
                try r.skipValue()
            }
        }) else { return nil }
        guard let keyValue else { missing("key"); return nil }
        guard let op else { missing("operator"); return nil }
        return LabelSelector.Expression(key: keyValue, operator: op, values: values)
    }
}

// MARK: - typed values with field failures

extension JSONReader {
    /// The current path as `a.b[0].c`.
    var fieldPath: String {
        var out = ""
        for item in path {
            switch item {
            case .key(let key): out += out.isEmpty ? key : ".\(key)"
            case .index(let i): out += "[\(i)]"
            }
        }
        return out
    }

    /// Records a failure at the current path, unless one is recorded already.
    mutating func fail(_ message: String) {
        if fieldFailure == nil { fieldFailure = FieldError(field: fieldPath, reason: message) }
    }

    /// Records that `key`, required in the object just read, is missing.
    mutating func missing(_ key: String) {
        path.append(.key(key))
        fail("is required but missing")
        path.removeLast()
    }

    /// Runs `body` on one top-level section of an object (path `name`); returns its failure.
    mutating func section(_ name: String, _ body: (inout JSONReader) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) -> FieldError? {
        let saved = (path, fieldFailure)
        path = [.key(name)]
        fieldFailure = nil
        try body(&self)
        let failure = fieldFailure
        (path, fieldFailure) = saved
        return failure
    }

    /// Runs `body` with `key` appended to the path.
    @inline(__always) @discardableResult
    mutating func at<T>(_ key: String, _ body: (inout JSONReader) throws(JSONSyntaxError) -> T) throws(JSONSyntaxError) -> T {
        path.append(.key(key))
        let value = try body(&self)
        path.removeLast()
        return value
    }

    /// An object: `member` per key; false for null; a failure for another type.
    @discardableResult
    mutating func object(_ member: (inout JSONReader, JSONKey) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) -> Bool {
        switch try peekType() {
        case .object:
            try readObject(member)
            return true
        case .null:
            try readNull()
            return false
        default:
            fail("has the wrong type, expected Mapping")
            try skipValue()
            return false
        }
    }

    /// An object that may not be null (a list element).
    @discardableResult
    mutating func requiredObject(_ member: (inout JSONReader, JSONKey) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) -> Bool {
        if try peekType() == .null {
            fail("is null, expected Mapping")
            try readNull()
            return false
        }
        return try object(member)
    }

    /// An array: `element` per index (with the index on the path); false for null.
    @discardableResult
    mutating func array(_ element: (inout JSONReader, Int) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) -> Bool {
        switch try peekType() {
        case .array:
            try readArray { r, i throws(JSONSyntaxError) in
                r.path.append(.index(i))
                try element(&r, i)
                r.path.removeLast()
            }
            return true
        case .null:
            try readNull()
            return false
        default:
            fail("has the wrong type, expected Sequence")
            try skipValue()
            return false
        }
    }

    /// An array of the values `element` returns (nil ones dropped); nil for null.
    mutating func list<T>(_ element: (inout JSONReader) throws(JSONSyntaxError) -> T?) throws(JSONSyntaxError) -> [T]? {
        var out: [T] = []
        let present = try array { r, _ throws(JSONSyntaxError) in
            if let value = try element(&r) { out.append(value) }
        }
        return present ? out : nil
    }

    /// A string; null is absent.
    mutating func optionalString() throws(JSONSyntaxError) -> String? {
        switch try peekType() {
        case .string: return try readString()
        case .null: try readNull(); return nil
        default:
            fail("has the wrong type, expected String")
            try skipValue()
            return nil
        }
    }

    /// A string that may not be null.
    mutating func requiredString() throws(JSONSyntaxError) -> String? {
        if try peekType() == .null {
            fail("is null, expected String")
            try readNull()
            return nil
        }
        return try optionalString()
    }

    /// A string where any other type reads as absent (kind, apiVersion: as the YAML path does).
    mutating func lenientString() throws(JSONSyntaxError) -> String? {
        if try peekType() == .string { return try readString() }
        try skipValue()
        return nil
    }

    /// An integer; null is absent; a fraction, an exponent or an out-of-range value is a failure.
    mutating func optionalInt() throws(JSONSyntaxError) -> Int? {
        switch try peekType() {
        case .number:
            let (text, isInteger) = try readNumber()
            guard isInteger else {
                fail("has the wrong type, expected Int")
                return nil
            }
            var value = 0
            let negative = text[0] == UInt8(ascii: "-")
            for b in text.dropFirst(negative ? 1 : 0) {
                let (times, o1) = value.multipliedReportingOverflow(by: 10)
                let (next, o2) = negative ? times.subtractingReportingOverflow(Int(b &- 48)) : times.addingReportingOverflow(Int(b &- 48))
                if o1 || o2 {
                    fail("\(String(decoding: text.prefix(40), as: UTF8.self))\(text.count > 40 ? "..." : "") does not fit in Int")
                    return nil
                }
                value = next
            }
            return value
        case .null:
            try readNull()
            return nil
        default:
            fail("has the wrong type, expected Int")
            try skipValue()
            return nil
        }
    }

    /// An integer that may not be null.
    mutating func requiredInt() throws(JSONSyntaxError) -> Int? {
        if try peekType() == .null {
            fail("is null, expected Int")
            try readNull()
            return nil
        }
        return try optionalInt()
    }

    /// A boolean; null is absent.
    mutating func optionalBool() throws(JSONSyntaxError) -> Bool? {
        switch try peekType() {
        case .bool: return try readBool()
        case .null: try readNull(); return nil
        default:
            fail("has the wrong type, expected Bool")
            try skipValue()
            return nil
        }
    }

    /// An array of strings; nil for null.
    mutating func stringArray() throws(JSONSyntaxError) -> [String]? {
        try list { r throws(JSONSyntaxError) in try r.requiredString() }
    }

    /// A string-to-string object merged into `map`; false for null.
    @discardableResult
    mutating func stringMap(into map: inout [String: String]) throws(JSONSyntaxError) -> Bool {
        try object { r, key throws(JSONSyntaxError) in
            let name = key.string
            if let value = try r.at(name, { r throws(JSONSyntaxError) in try r.requiredString() }) { map[name] = value }
        }
    }
}
