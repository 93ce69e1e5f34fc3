/// Resolves where the API server is and how to authenticate, as kubectl and client-go do: from
/// kubeconfig files (one named file, a `KUBECONFIG` list merged, or `~/.kube/config`) or from the
/// pod's service account. Reads files; runs nothing (exec plugins run in `Credentials`).
public enum ConnectionResolver {
    /// The directory where the kubelet mounts a pod's service account.
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// Picket's default order: a `--kubeconfig` flag's file alone when given; otherwise
    /// `$KUBECONFIG`, then the in-cluster configuration (when `KUBERNETES_SERVICE_HOST` is set and
    /// no `context` is asked for, since contexts exist only in kubeconfig files), then
    /// `$HOME/.kube/config`. Inside a cluster, in-cluster errors are reported rather than
    /// falling back to a home directory's file. `serviceAccount` is where the token, CA and
    /// namespace files are.
    public static func resolve(
        kubeconfig: String?, context: String?, environment: [String: String], serviceAccount: String = serviceAccountDirectory
    ) throws(KubeConfigError) -> ClusterConnection {
        if let kubeconfig, !kubeconfig.isEmpty {
            return try fromKubeconfig(path: kubeconfig, context: context, environment: environment)
        }
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return try fromKubeconfig(path: nil, context: context, environment: environment)
        }
        if let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty, context?.isEmpty ?? true {
            return try inCluster(
                environment: environment, tokenPath: serviceAccount + "/token", caPath: serviceAccount + "/ca.crt",
                namespacePath: serviceAccount + "/namespace")
        }
        do {
            return try fromKubeconfig(path: nil, context: context, environment: environment)
        } catch where error.code == .noConfiguration {
            throw KubeConfigError(
                code: error.code, source: error.source,
                reason: "\(error.reason), KUBECONFIG is not set and KUBERNETES_SERVICE_HOST is not set (not running in a cluster)")
        }
    }

    /// The connection of a kubeconfig context, as kubectl chooses it. Files: `path` alone when
    /// given (it must exist); else `$KUBECONFIG`, a colon-separated list merged in order (files
    /// that do not exist are skipped, but one must exist); else `$HOME/.kube/config`. Context:
    /// `context` when given, else the merged `current-context`.
    public static func fromKubeconfig(
        path: String?, context: String?, environment: [String: String]
    ) throws(KubeConfigError) -> ClusterConnection {
        let config = try loadConfig(path: path, environment: environment)
        return try connection(of: config, context: context)
    }

    /// The connection of the pod's service account: the API server from
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`, the token file (re-read when the
    /// kubelet rotates it), the cluster's CA and the pod's namespace (nil when that file is
    /// absent).
    public static func inCluster(
        environment: [String: String],
        tokenPath: String = serviceAccountDirectory + "/token",
        caPath: String = serviceAccountDirectory + "/ca.crt",
        namespacePath: String = serviceAccountDirectory + "/namespace"
    ) throws(KubeConfigError) -> ClusterConnection {
        let host = try serviceVariable("KUBERNETES_SERVICE_HOST", environment)
        let port = try serviceVariable("KUBERNETES_SERVICE_PORT", environment)
        for (what, file) in [("service account token", tokenPath), ("cluster CA", caPath)] {
            do {
                try FileReader.checkReadable(file)
            } catch {
                throw KubeConfigError(code: .unreadable, source: "in-cluster", reason: "\(what) \(file): cannot read: \(error.reason)")
            }
        }
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return ClusterConnection(
            server: "https://\(bracketed):\(port)", tls: TLSConfig(certificateAuthority: .file(caPath)),
            credentials: .tokenFile(tokenPath), origin: "in-cluster", namespace: try podNamespace(namespacePath))
    }

    // MARK: - In-cluster

    /// A service variable the kubelet sets in every pod.
    private static func serviceVariable(_ name: String, _ environment: [String: String]) throws(KubeConfigError) -> String {
        guard let value = environment[name], !value.isEmpty else {
            throw KubeConfigError(code: .notInCluster, source: "in-cluster", reason: "not running in a cluster: \(name) is not set")
        }
        return value
    }

    /// The namespace file's content, trimmed; nil when it does not exist.
    private static func podNamespace(_ path: String) throws(KubeConfigError) -> String? {
        do {
            let namespace = try FileReader.text(path).trimmingWhitespace()
            return namespace.isEmpty ? nil : namespace
        } catch {
            if error.isMissing { return nil }
            throw KubeConfigError(code: .unreadable, source: "in-cluster", reason: "namespace \(path): cannot read: \(error.reason)")
        }
    }

    // MARK: - Choosing files

    /// The kubeconfig files kubectl would read, merged.
    static func loadConfig(path: String?, environment: [String: String]) throws(KubeConfigError) -> MergedKubeConfig {
        if let path, !path.isEmpty {
            return try single(path)
        }
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            return try merged(list)
        }
        guard let home = environment["HOME"], !home.isEmpty else {
            throw KubeConfigError(code: .noConfiguration, source: "kubeconfig", reason: "no file given, KUBECONFIG is not set and HOME is not set")
        }
        let file = (home.hasSuffix("/") ? home : home + "/") + ".kube/config"
        guard let config = try KubeConfigFile.loadIfPresent(file) else {
            throw KubeConfigError(code: .noConfiguration, source: "kubeconfig \(file)", reason: "does not exist")
        }
        return MergedKubeConfig([config], source: "kubeconfig \(file)")
    }

    /// One named file, which must exist.
    private static func single(_ path: String) throws(KubeConfigError) -> MergedKubeConfig {
        MergedKubeConfig([try KubeConfigFile.load(path)], source: "kubeconfig \(path)")
    }

    /// A `KUBECONFIG` list: empty entries and repeats dropped, missing files skipped.
    private static func merged(_ list: String) throws(KubeConfigError) -> MergedKubeConfig {
        var paths: [String] = []
        for entry in list.split(separator: ":", omittingEmptySubsequences: true).map(String.init) where !paths.contains(entry) {
            paths.append(entry)
        }
        var files: [KubeConfigFile] = []
        for path in paths {
            if let file = try KubeConfigFile.loadIfPresent(path) { files.append(file) }
        }
        guard !files.isEmpty else {
            throw KubeConfigError(code: .noConfiguration, source: "KUBECONFIG \(list)", reason: "none of these files exists")
        }
        return MergedKubeConfig(files, source: files.count == 1 ? "kubeconfig \(files[0].path)" : "KUBECONFIG \(list)")
    }

    // MARK: - Contexts

    /// The connection of `context` (or the current context) in a merged configuration.
    static func connection(of config: MergedKubeConfig, context: String?) throws(KubeConfigError) -> ClusterConnection {
        let name: String
        if let context, !context.isEmpty {
            name = context
        } else if let current = config.currentContext {
            name = current
        } else {
            throw KubeConfigError(code: .noContext, source: config.source, reason: "no context given and current-context is not set")
        }
        guard let entry = config.contexts[name] else {
            let which = (context?.isEmpty ?? true) ? "current-context" : "context"
            throw KubeConfigError(code: .undefined, source: config.source, reason: "\(which) \"\(name)\" is not defined")
        }
        let fields = entry.fields
        let cluster = try namedEntry(config.clusters, fields, key: "cluster", context: name, required: true)
        let user = try namedEntry(config.users, fields, key: "user", context: name, required: false)
        guard let cluster else { throw fields.invalid("cluster", "is not set") }
        var (server, tls) = try clusterSettings(cluster)
        let userSettings = try UserSettings(user)
        tls.clientCertificate = userSettings.clientCertificate
        tls.clientKey = userSettings.clientKey
        return ClusterConnection(
            server: server, tls: tls, credentials: userSettings.credentials, origin: "kubeconfig \(entry.file), context \(name)",
            namespace: try fields.string("namespace"))
    }

    /// The cluster or user a context names; nil when it names none and none is required.
    private static func namedEntry(
        _ entries: [String: NamedEntry], _ fields: KubeConfigFields, key: String, context: String, required: Bool
    ) throws(KubeConfigError) -> NamedEntry? {
        guard let name = try fields.string(key) else {
            if required { throw fields.invalid(key, "is not set") }
            return nil
        }
        guard let entry = entries[name] else {
            throw KubeConfigError(code: .undefined, source: fields.source, reason: "context \"\(context)\": \(key) \"\(name)\" is not defined")
        }
        return entry
    }

    /// A cluster's server and how to verify it. `certificate-authority-data` wins over
    /// `certificate-authority`.
    private static func clusterSettings(_ cluster: NamedEntry) throws(KubeConfigError) -> (server: String, tls: TLSConfig) {
        let fields = cluster.fields
        if try fields.string("proxy-url") != nil {
            throw fields.invalid("proxy-url", "is not supported: Picket connects to the API server directly", code: .unsupported)
        }
        guard let server = try fields.string("server") else { throw fields.invalid("server", "is not set") }
        guard server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw fields.invalid("server", "\"\(server)\" is not an https:// or http:// URL")
        }
        let authority = try fields.material(data: "certificate-authority-data", file: "certificate-authority")
        let insecure = try fields.bool("insecure-skip-tls-verify")
        if insecure && authority != nil {
            throw fields.invalid("insecure-skip-tls-verify", "cannot be combined with a certificate authority (kubectl refuses it too)")
        }
        return (server, TLSConfig(certificateAuthority: authority, insecureSkipVerify: insecure, serverName: try fields.string("tls-server-name")))
    }
}

/// What a kubeconfig user presents: a client certificate, and one of a token, basic
/// credentials or an exec plugin.
struct UserSettings {
    /// Token, basic or exec credentials.
    var credentials: CredentialConfig = .none
    /// The client certificate; `client-certificate-data` wins over `client-certificate`.
    var clientCertificate: TLSMaterial?
    /// Its key; `client-key-data` wins over `client-key`.
    var clientKey: TLSMaterial?

    /// The settings of `user`; nothing for a context without a user.
    init(_ user: NamedEntry?) throws(KubeConfigError) {
        guard let user else { return }
        let fields = user.fields
        try Self.refuseUnsupported(fields)
        clientCertificate = try fields.material(data: "client-certificate-data", file: "client-certificate")
        clientKey = try fields.material(data: "client-key-data", file: "client-key")
        if clientCertificate != nil && clientKey == nil { throw fields.invalid("client-key", "is not set, but a client certificate is") }
        if clientKey != nil && clientCertificate == nil { throw fields.invalid("client-certificate", "is not set, but a client key is") }
        credentials = try Self.credentials(fields)
    }

    /// Settings that would change who Picket is if ignored.
    private static func refuseUnsupported(_ fields: KubeConfigFields) throws(KubeConfigError) {
        if fields.node("auth-provider") != nil {
            throw fields.invalid("auth-provider", "auth-provider plugins are not supported; use an exec plugin", code: .unsupported)
        }
        for key in ["as", "as-uid", "as-groups", "as-user-extra"] where fields.node(key) != nil {
            throw fields.invalid(key, "impersonation is not supported", code: .unsupported)
        }
    }

    /// The one authentication method the user sets; a `token` wins over a `tokenFile`.
    private static func credentials(_ fields: KubeConfigFields) throws(KubeConfigError) -> CredentialConfig {
        let token = try fields.string("token")
        let tokenFile = try fields.filePath("tokenFile")
        let username = try fields.string("username")
        let password = try fields.string("password")
        let exec = try fields.mapping("exec")
        var methods: [String] = []
        if token != nil || tokenFile != nil { methods.append("token") }
        if username != nil || password != nil { methods.append("username/password") }
        if exec != nil { methods.append("exec") }
        guard methods.count <= 1 else {
            throw KubeConfigError(
                code: .invalidField, source: fields.source,
                reason: "\(fields.path): more than one authentication method (\(methods.joined(separator: ", "))); only one is allowed")
        }
        if let token { return .token(token) }
        if let tokenFile { return .tokenFile(tokenFile) }
        if username != nil || password != nil { return .basic(username: username ?? "", password: password ?? "") }
        if let exec { return .exec(try execConfig(exec)) }
        return .none
    }

    /// A user's `exec` section. A command with a slash but not absolute is resolved against the
    /// kubeconfig's directory, as kubectl does; a bare name is looked up in PATH when run.
    private static func execConfig(_ fields: KubeConfigFields) throws(KubeConfigError) -> ExecConfig {
        guard let apiVersion = try fields.string("apiVersion") else { throw fields.invalid("apiVersion", "is not set") }
        guard var command = try fields.string("command") else { throw fields.invalid("command", "is not set") }
        if command.contains("/") { command = KubeConfigFields.resolve(command, relativeTo: fields.file) }
        var env: [ExecConfig.EnvVar] = []
        for (index, node) in try fields.sequence("env").enumerated() {
            let variable = try KubeConfigFields.element(node, file: fields.file, path: fields.path(of: "env[\(index)]"))
            guard let name = try variable.string("name") else { throw variable.invalid("name", "is not set") }
            env.append(ExecConfig.EnvVar(name: name, value: try variable.string("value") ?? ""))
        }
        return ExecConfig(
            apiVersion: apiVersion, command: command, args: try fields.strings("args"), env: env,
            installHint: try fields.string("installHint"), provideClusterInfo: try fields.bool("provideClusterInfo"),
            interactiveMode: try fields.string("interactiveMode"))
    }
}

extension String {
    /// The string without leading and trailing white space and line breaks.
    func trimmingWhitespace() -> String {
        guard let first = firstIndex(where: { !$0.isWhitespace }), let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[first...last])
    }
}
