// API responses: the objects they carry, as admitted.

/// An object from an API response, as admitted: namespaces, pods and nodes as decoded (with
/// their validation issues beside them), NetworkPolicies validated (`Policy`, as `ManifestSet`
/// holds them).
public enum APIObject: Sendable {
    /// A v1 Namespace.
    case namespace(Namespace)
    /// A v1 Pod.
    case pod(Pod)
    /// A networking.k8s.io/v1 NetworkPolicy, validated.
    case networkPolicy(Policy)
    /// A v1 Node.
    case node(Node)

    /// The object's kind: `Namespace`, `Pod`, `NetworkPolicy` or `Node`.
    public var kind: String {
        switch self {
        case .namespace: "Namespace"
        case .pod: "Pod"
        case .networkPolicy: "NetworkPolicy"
        case .node: "Node"
        }
    }

    /// metadata.name.
    public var name: String {
        switch self {
        case .namespace(let namespace): namespace.name
        case .pod(let pod): pod.key.name
        case .networkPolicy(let policy): policy.key.name
        case .node(let node): node.name
        }
    }

    /// metadata.namespace of a namespaced object (Pod, NetworkPolicy; `default` when absent);
    /// nil for cluster-scoped ones (Namespace, Node).
    public var namespace: String? {
        switch self {
        case .namespace, .node: nil
        case .pod(let pod): pod.key.namespace
        case .networkPolicy(let policy): policy.key.namespace
        }
    }
}
