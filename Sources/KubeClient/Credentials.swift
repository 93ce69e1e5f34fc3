import Foundation
import Synchronization

/// Why no credential could be produced. The description names the token file or the exec
/// plugin's command, then the reason: `exec plugin get-token: exited with status 1: denied`.
public struct CredentialError: Error, CustomStringConvertible, Equatable {
    /// The kind of failure, for callers that react to one. More codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case tokenFile, pluginConfiguration, pluginNotFound, pluginFailed, pluginTimedOut, pluginOutput
        }

        private let base: Base

        /// The code's name.
        public var description: String { base.rawValue }

        /// The token file cannot be read or is empty.
        public static let tokenFile = Code(base: .tokenFile)
        /// The exec section asks for something Picket cannot do (an unknown apiVersion, a
        /// terminal), or its cluster information cannot be read.
        public static let pluginConfiguration = Code(base: .pluginConfiguration)
        /// The plugin's program does not exist or is not executable.
        public static let pluginNotFound = Code(base: .pluginNotFound)
        /// The plugin exited with a non-zero status.
        public static let pluginFailed = Code(base: .pluginFailed)
        /// The plugin ran past its deadline and was killed.
        public static let pluginTimedOut = Code(base: .pluginTimedOut)
        /// The plugin's output is not a usable ExecCredential.
        public static let pluginOutput = Code(base: .pluginOutput)
    }

    /// The kind of failure.
    public var code: Code
    /// `token file PATH` or `exec plugin COMMAND`.
    public var source: String
    /// What went wrong.
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

/// What each request to one cluster presents, from its `CredentialConfig`: a static token or
/// basic credentials as they are; a token file re-read whenever the file changes (the kubelet
/// rotates projected service-account tokens in place); an exec plugin's credential cached until
/// shortly before it expires. Thread-safe; `current()` blocks while a file is read or a plugin
/// runs (call it from the transport's own thread, not from the Swift concurrency pool).
public final class Credentials: Sendable {
    /// How long before an exec credential's expiry it is renewed.
    public static let expirySkew: TimeInterval = 10

    private let connection: ClusterConnection
    private let environment: [String: String]
    private let pluginTimeout: Double
    private let now: @Sendable () -> Date
    private let cache = Mutex(Cache())

    /// What has been read or obtained, and when it stops being good.
    private struct Cache {
        /// The token file's token and the version of the file it came from.
        var fileToken: (identity: FileIdentity, credential: Credential)?
        /// The exec plugin's credential and when to renew it (nil: only after `invalidate`).
        var exec: (credential: Credential, renewAt: Date?)?
    }

    /// Credentials for `connection`. An exec plugin inherits `environment` (this process's by
    /// default) plus its configured variables, is found through that environment's PATH, and
    /// is killed after `pluginTimeout` seconds. `now` is the clock expiry is judged by.
    public init(
        _ connection: ClusterConnection, environment: [String: String] = ProcessInfo.processInfo.environment,
        pluginTimeout: Double = 30, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.connection = connection
        self.environment = environment
        self.pluginTimeout = pluginTimeout
        self.now = now
    }

    /// What the next request presents: an `Authorization` value, and for an exec plugin that
    /// returns one, a client certificate and key (PEM) that replace the connection's.
    public func current() throws(CredentialError) -> Credential {
        switch connection.credentials {
        case .none:
            return Credential()
        case .token(let token):
            return Credential(authorization: "Bearer \(token)")
        case .basic(let username, let password):
            return Credential(authorization: "Basic \(Data("\(username):\(password)".utf8).base64EncodedString())")
        case .tokenFile(let path):
            return try cache.withLock { (cache) throws(CredentialError) -> Credential in try Self.fileToken(path, cache: &cache) }
        case .exec(let config):
            return try cache.withLock { (cache) throws(CredentialError) -> Credential in try execCredential(config, cache: &cache) }
        }
    }

    /// Forgets what was read or obtained: the next `current()` re-reads the token file and runs
    /// the exec plugin again. Call it after the server answers 401.
    public func invalidate() {
        cache.withLock { $0 = Cache() }
    }

    /// Like `invalidate()`, but only when the cached credential is still `presented`: of many
    /// requests refused with 401 at once, the first one's call renews the credential and the
    /// others', which presented the same, leave the new one in place.
    public func invalidate(ifCurrent presented: Credential) {
        cache.withLock { cache in
            if cache.fileToken?.credential == presented { cache.fileToken = nil }
            if cache.exec?.credential == presented { cache.exec = nil }
        }
    }

    // MARK: - Token file

    /// The token file's token: the cached one while the file is unchanged, else read again
    /// (white space around it trimmed).
    private static func fileToken(_ path: String, cache: inout Cache) throws(CredentialError) -> Credential {
        let failure = { (reason: String) in CredentialError(code: .tokenFile, source: "token file \(path)", reason: reason) }
        let current: FileIdentity
        do { current = try FileReader.identity(of: path) } catch { throw failure("cannot read: \(error.reason)") }
        if let cached = cache.fileToken, cached.identity == current { return cached.credential }
        let file: (bytes: [UInt8], identity: FileIdentity)
        do { file = try FileReader.read(path) } catch { throw failure("cannot read: \(error.reason)") }
        let token = String(decoding: file.bytes, as: UTF8.self).trimmingWhitespace()
        guard !token.isEmpty else { throw failure("is empty") }
        let credential = Credential(authorization: "Bearer \(token)")
        cache.fileToken = (file.identity, credential)
        return credential
    }

    // MARK: - Exec plugin

    /// The exec plugin's credential: the cached one until it is due for renewal, else the
    /// plugin's new output.
    private func execCredential(_ config: ExecConfig, cache: inout Cache) throws(CredentialError) -> Credential {
        if let cached = cache.exec, cached.renewAt.map({ now() < $0 }) ?? true { return cached.credential }
        let plugin = ExecPlugin(config: config, connection: connection, environment: environment, timeout: pluginTimeout)
        let (credential, expiry) = try plugin.run()
        cache.exec = (credential, expiry.map { $0 - Self.expirySkew })
        return credential
    }
}
