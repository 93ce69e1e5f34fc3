/// Why no `ClusterConnection` could be resolved. The description names where (`kubeconfig
/// FILE`, `KUBECONFIG LIST` or `in-cluster`), then the context, cluster, user or field and what
/// is wrong with it: `kubeconfig /x/config: context "prod": cluster "c1" is not defined`.
public struct KubeConfigError: Error, CustomStringConvertible, Equatable {
    /// The kind of failure, for callers that react to one. More codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unreadable, notYAML, invalidField, undefined, noContext, unsupported, notInCluster, noConfiguration
        }

        private let base: Base

        /// The code's name.
        public var description: String { base.rawValue }

        /// A file could not be read (permissions, a directory, a missing file that was asked for).
        public static let unreadable = Code(base: .unreadable)
        /// A kubeconfig file is not YAML.
        public static let notYAML = Code(base: .notYAML)
        /// A field is missing, of the wrong type, or has a value that cannot be used.
        public static let invalidField = Code(base: .invalidField)
        /// A context, or the cluster or user a context names, is not defined.
        public static let undefined = Code(base: .undefined)
        /// No context was given and no file sets `current-context`.
        public static let noContext = Code(base: .noContext)
        /// A setting Picket does not implement (`proxy-url`, `auth-provider`, impersonation).
        public static let unsupported = Code(base: .unsupported)
        /// The in-cluster configuration was asked for outside a cluster.
        public static let notInCluster = Code(base: .notInCluster)
        /// No kubeconfig file exists where one was looked for.
        public static let noConfiguration = Code(base: .noConfiguration)
    }

    /// The kind of failure.
    public var code: Code
    /// Where: `kubeconfig FILE`, `KUBECONFIG LIST` or `in-cluster`.
    public var source: String
    /// What is wrong, naming the context, cluster, user or field.
    public var reason: String

    /// Creates an error.
    public init(code: Code, source: String, reason: String) {
        self.code = code
        self.source = source
        self.reason = reason
    }

    /// `source: reason`.
    public var description: String { "\(source): \(reason)" }
}
