// KubeClient: Picket's Kubernetes API client.
//
// Design note: a `ClusterConnection` says where the API server is and how to prove who we are,
// resolved once from a kubeconfig (as kubectl reads it) or from the in-cluster service account.
// `Credentials` turns its credential configuration into what each request carries (a bearer
// token re-read from its file when it changes, an exec plugin's token cached until it expires),
// `Transport` performs requests over libcurl on the calling thread (never on the Swift
// concurrency pool: it has two threads here and a blocking transfer would starve it), and
// `APIClient` adds the API's conventions: Status bodies as errors, Retry-After and capped
// exponential backoff with jitter. Informers list and then watch one resource each, keep the
// projected model, and deliver typed changes in order.

/// Key material for TLS: a file path, or the bytes themselves (kubeconfig's `*-data` fields,
/// base64-decoded).
public enum TLSMaterial: Sendable, Equatable {
    /// A PEM file.
    case file(String)
    /// PEM bytes.
    case data([UInt8])
}

/// How to verify the API server and, optionally, present a client certificate.
public struct TLSConfig: Sendable, Equatable {
    /// The CA bundle the server's certificate must chain to; nil: the system's CAs.
    public var certificateAuthority: TLSMaterial?
    /// The client certificate (PEM), with `clientKey`.
    public var clientCertificate: TLSMaterial?
    /// The client certificate's private key (PEM).
    public var clientKey: TLSMaterial?
    /// kubeconfig's `insecure-skip-tls-verify`: accept any server certificate.
    public var insecureSkipVerify: Bool
    /// kubeconfig's `tls-server-name`: the name to verify the server's certificate against.
    public var serverName: String?

    /// Creates a TLS configuration.
    public init(
        certificateAuthority: TLSMaterial? = nil, clientCertificate: TLSMaterial? = nil, clientKey: TLSMaterial? = nil,
        insecureSkipVerify: Bool = false, serverName: String? = nil
    ) {
        self.certificateAuthority = certificateAuthority
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.insecureSkipVerify = insecureSkipVerify
        self.serverName = serverName
    }
}

/// An exec credential plugin, as a kubeconfig user's `exec` names it.
public struct ExecConfig: Sendable, Equatable {
    /// One variable of the plugin's environment.
    public struct EnvVar: Sendable, Equatable {
        /// The variable's name.
        public var name: String
        /// Its value.
        public var value: String
        /// Creates a variable.
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// `client.authentication.k8s.io/v1` or `client.authentication.k8s.io/v1beta1`.
    public var apiVersion: String
    /// The program: a path, or a name looked up in PATH.
    public var command: String
    /// Its arguments.
    public var args: [String]
    /// Variables added to the environment it inherits.
    public var env: [EnvVar]
    /// Shown when the program cannot be run.
    public var installHint: String?
    /// Whether the plugin is told the cluster's server and CA (in KUBERNETES_EXEC_INFO).
    public var provideClusterInfo: Bool
    /// `Never`, `IfAvailable` or `Always`; Picket never has a terminal, so `Always` fails.
    public var interactiveMode: String?

    /// Creates an exec configuration.
    public init(
        apiVersion: String, command: String, args: [String] = [], env: [EnvVar] = [], installHint: String? = nil,
        provideClusterInfo: Bool = false, interactiveMode: String? = nil
    ) {
        self.apiVersion = apiVersion
        self.command = command
        self.args = args
        self.env = env
        self.installHint = installHint
        self.provideClusterInfo = provideClusterInfo
        self.interactiveMode = interactiveMode
    }
}

/// How requests prove who is asking, beyond a client certificate.
public enum CredentialConfig: Sendable, Equatable {
    /// Nothing (a client certificate alone, or anonymous).
    case none
    /// A bearer token given inline.
    case token(String)
    /// A bearer token read from a file, re-read whenever the file changes (projected
    /// service-account tokens are rotated in place).
    case tokenFile(String)
    /// HTTP basic authentication (kubeconfig `username`/`password`).
    case basic(username: String, password: String)
    /// An exec credential plugin.
    case exec(ExecConfig)
}

/// Where an API server is and how to reach it: what a kubeconfig context or the in-cluster
/// configuration resolves to.
public struct ClusterConnection: Sendable, Equatable {
    /// The server's base URL (`https://host:port`, maybe with a path prefix), without a trailing
    /// slash.
    public var server: String
    /// TLS verification and client certificate.
    public var tls: TLSConfig
    /// Bearer token, basic or exec credentials.
    public var credentials: CredentialConfig
    /// Where this came from, for messages: `kubeconfig FILE, context NAME` or `in-cluster`.
    public var origin: String
    /// The context's namespace, or the service account's (in-cluster); nil when neither says.
    public var namespace: String?

    /// Creates a connection.
    public init(
        server: String, tls: TLSConfig = TLSConfig(), credentials: CredentialConfig = .none, origin: String, namespace: String? = nil
    ) {
        var server = server
        while server.hasSuffix("/") { server.removeLast() }
        self.server = server
        self.tls = tls
        self.credentials = credentials
        self.origin = origin
        self.namespace = namespace
    }
}

/// What one request presents, beyond the connection's TLS configuration.
public struct Credential: Sendable, Equatable {
    /// The `Authorization` header's value (`Bearer …` or `Basic …`), if any.
    public var authorization: String?
    /// A client certificate supplied by an exec plugin (PEM), overriding the connection's.
    public var clientCertificate: [UInt8]?
    /// Its key (PEM).
    public var clientKey: [UInt8]?

    /// Creates a credential.
    public init(authorization: String? = nil, clientCertificate: [UInt8]? = nil, clientKey: [UInt8]? = nil) {
        self.authorization = authorization
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
    }
}
