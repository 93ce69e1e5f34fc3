import Foundation
import ToolRunner

#if canImport(Glibc)
import Glibc
#endif

/// One run of an exec credential plugin, as client-go runs it: the program found through PATH,
/// an `ExecCredential` request in `KUBERNETES_EXEC_INFO` (never interactive: Picket has no
/// terminal, and the plugin's stdin is empty), a deadline, and its stdout read as an
/// `ExecCredential` of the configured apiVersion.
struct ExecPlugin {
    /// The apiVersions of ExecCredential Picket speaks.
    static let versions = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]
    /// How many lines of the plugin's stderr an error shows.
    static let stderrLines = 8

    /// The kubeconfig's exec section.
    var config: ExecConfig
    /// The cluster, for `provideClusterInfo`.
    var connection: ClusterConnection
    /// The environment the plugin inherits (before its configured variables).
    var environment: [String: String]
    /// Seconds before the plugin is killed.
    var timeout: Double

    /// Runs the plugin and returns its credential and the expiry it gave, if any.
    func run() throws(CredentialError) -> (credential: Credential, expiry: Date?) {
        try checkConfiguration()
        let program = try locate()
        var variables = environment
        for variable in config.env { variables[variable.name] = variable.value }
        variables["KUBERNETES_EXEC_INFO"] = try request()
        let result = runTool(program, config.args, stdin: nil, timeout: timeout, environment: variables)
        if result.timedOut {
            throw failure(.pluginTimedOut, "did not finish within \(Self.seconds(timeout)) and was killed")
        }
        guard result.status == 0 else {
            throw failure(.pluginFailed, "exited with status \(result.status)\(Self.excerpt(of: result.stderr))")
        }
        return try parse(result.stdout)
    }

    /// An error about this plugin.
    func failure(_ code: CredentialError.Code, _ reason: String) -> CredentialError {
        CredentialError(code: code, source: "exec plugin \(config.command)", reason: reason)
    }

    // MARK: - Before running

    /// Refuses an apiVersion Picket does not speak and interactive modes it cannot honour; like
    /// kubectl, v1 requires `interactiveMode` to be set.
    func checkConfiguration() throws(CredentialError) {
        guard Self.versions.contains(config.apiVersion) else {
            throw failure(.pluginConfiguration, "apiVersion \"\(config.apiVersion)\" is not supported (\(Self.versions.joined(separator: " or ")))")
        }
        switch config.interactiveMode {
        case nil where config.apiVersion == Self.versions[0]:
            throw failure(.pluginConfiguration, "interactiveMode must be set for \(config.apiVersion) (Never or IfAvailable)")
        case nil, "Never", "IfAvailable":
            return
        case "Always":
            throw failure(.pluginConfiguration, "interactiveMode Always needs a terminal, and Picket has none")
        case let mode?:
            throw failure(.pluginConfiguration, "interactiveMode \"\(mode)\" is not Never, IfAvailable or Always")
        }
    }

    /// The program's path: the command itself when it has a slash, else the first executable
    /// file of that name in the environment's PATH.
    func locate() throws(CredentialError) -> String {
        let command = config.command
        let hint = config.installHint.map { "; install hint: \($0)" } ?? ""
        if command.contains("/") {
            if Self.isExecutableFile(command) { return command }
            let reason = access(command, F_OK) == 0 ? "is not an executable file" : "not found"
            throw failure(.pluginNotFound, reason + hint)
        }
        for directory in (environment["PATH"] ?? "").split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + command
            if Self.isExecutableFile(candidate) { return candidate }
        }
        throw failure(.pluginNotFound, "not found in PATH" + hint)
    }

    /// Whether `path` is a regular file this process may execute.
    static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    /// The ExecCredential request for `KUBERNETES_EXEC_INFO`, with the cluster when
    /// `provideClusterInfo` is set.
    func request() throws(CredentialError) -> String {
        let cluster = config.provideClusterInfo ? try clusterInfo() : nil
        let request = ExecCredentialRequest(apiVersion: config.apiVersion, spec: .init(interactive: false, cluster: cluster))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return String(decoding: try encoder.encode(request), as: UTF8.self)
        } catch {
            throw failure(.pluginConfiguration, "cannot encode KUBERNETES_EXEC_INFO: \(error)")
        }
    }

    /// The cluster as the plugin is told it; a CA file is read and sent as data, as kubectl does.
    func clusterInfo() throws(CredentialError) -> ExecCredentialRequest.Cluster {
        let tls = connection.tls
        var authority: [UInt8]?
        switch tls.certificateAuthority {
        case .data(let bytes):
            authority = bytes
        case .file(let path):
            do {
                authority = try FileReader.read(path).bytes
            } catch {
                throw failure(.pluginConfiguration, "cannot read the certificate authority \(path) for provideClusterInfo: \(error.reason)")
            }
        case nil:
            authority = nil
        }
        return ExecCredentialRequest.Cluster(
            server: connection.server, tlsServerName: tls.serverName, insecureSkipTLSVerify: tls.insecureSkipVerify ? true : nil,
            certificateAuthorityData: authority.map { Data($0).base64EncodedString() })
    }

    // MARK: - After running

    /// The credential in the plugin's stdout, and its expiry.
    func parse(_ stdout: String) throws(CredentialError) -> (credential: Credential, expiry: Date?) {
        guard !stdout.trimmingWhitespace().isEmpty else { throw failure(.pluginOutput, "printed nothing on stdout") }
        let response: ExecCredentialResponse
        do {
            response = try JSONDecoder().decode(ExecCredentialResponse.self, from: Data(stdout.utf8))
        } catch {
            throw failure(.pluginOutput, Self.reason(error, size: stdout.utf8.count))
        }
        guard response.kind == "ExecCredential" else {
            throw failure(.pluginOutput, "printed kind \"\(response.kind ?? "")\", not ExecCredential")
        }
        guard response.apiVersion == config.apiVersion else {
            throw failure(.pluginOutput, "printed apiVersion \"\(response.apiVersion ?? "")\"; the kubeconfig asks for \"\(config.apiVersion)\"")
        }
        guard let status = response.status else { throw failure(.pluginOutput, "printed no status") }
        return (try credential(status), try expiry(status))
    }

    /// The token and client certificate of a status; at least one, and a certificate with its key.
    func credential(_ status: ExecCredentialResponse.Status) throws(CredentialError) -> Credential {
        let token = status.token.flatMap { $0.isEmpty ? nil : $0 }
        let certificate = status.clientCertificateData.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        let key = status.clientKeyData.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        if token == nil && certificate == nil && key == nil {
            throw failure(.pluginOutput, "printed neither a token nor a client certificate")
        }
        if certificate != nil && key == nil { throw failure(.pluginOutput, "printed a client certificate without its key") }
        if key != nil && certificate == nil { throw failure(.pluginOutput, "printed a client key without its certificate") }
        return Credential(authorization: token.map { "Bearer \($0)" }, clientCertificate: certificate, clientKey: key)
    }

    /// `status.expirationTimestamp` (RFC 3339, with or without fractional seconds); nil when unset.
    func expiry(_ status: ExecCredentialResponse.Status) throws(CredentialError) -> Date? {
        guard let text = status.expirationTimestamp, !text.isEmpty else { return nil }
        do {
            return try Date.ISO8601FormatStyle().parse(text)
        } catch {
            throw failure(.pluginOutput, "status.expirationTimestamp \"\(text)\" is not an RFC 3339 time")
        }
    }

    /// What is wrong with output that does not decode. The output itself is not shown: it may
    /// hold a secret.
    static func reason(_ error: any Error, size: Int) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty:
            return "printed \(size) bytes that are not JSON"
        case DecodingError.typeMismatch(_, let context), DecodingError.dataCorrupted(let context):
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return "printed JSON that is not an ExecCredential: \(path.isEmpty ? "" : "\(path): ")\(context.debugDescription)"
        default:
            return "printed JSON that is not an ExecCredential: \(error)"
        }
    }

    /// `: ` and the first lines of a plugin's stderr, trimmed; a note when it is empty.
    static func excerpt(of stderr: String) -> String {
        let lines = stderr.split(whereSeparator: \.isNewline).map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty }
        guard !lines.isEmpty else { return " (nothing on stderr)" }
        let shown = lines.prefix(stderrLines).map { $0.count > 300 ? $0.prefix(300) + "…" : $0 }
        return ": " + shown.joined(separator: "\n") + (lines.count > stderrLines ? "\n…" : "")
    }

    /// `30 s`, `0.5 s`.
    static func seconds(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e9 ? "\(Int(value)) s" : "\(value) s"
    }
}

/// The ExecCredential a plugin is given in `KUBERNETES_EXEC_INFO`.
struct ExecCredentialRequest: Encodable {
    /// What the request says about the caller.
    struct Spec: Encodable {
        /// Always false: Picket has no terminal.
        var interactive: Bool
        /// The cluster, with `provideClusterInfo`.
        var cluster: Cluster?
    }

    /// The cluster's connection settings, named as in a kubeconfig.
    struct Cluster: Encodable {
        var server: String
        var tlsServerName: String?
        var insecureSkipTLSVerify: Bool?
        var certificateAuthorityData: String?

        enum CodingKeys: String, CodingKey {
            case server
            case tlsServerName = "tls-server-name"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
            case certificateAuthorityData = "certificate-authority-data"
        }
    }

    var apiVersion: String
    var kind = "ExecCredential"
    var spec: Spec
}

/// The fields Picket reads of the ExecCredential a plugin prints.
struct ExecCredentialResponse: Decodable {
    /// What the plugin obtained.
    struct Status: Decodable {
        var token: String?
        var clientCertificateData: String?
        var clientKeyData: String?
        var expirationTimestamp: String?
    }

    var apiVersion: String?
    var kind: String?
    var status: Status?
}
