import Foundation
import Glibc
import KubeClient
import Testing

let v1 = "client.authentication.k8s.io/v1"
let v1beta1 = "client.authentication.k8s.io/v1beta1"

/// An ExecCredential as a plugin prints it.
func makeExecCredential(
    _ apiVersion: String = v1beta1, token: String? = "plugin-token", expiration: String? = nil,
    certificate: String? = nil, key: String? = nil
) -> String {
    var status: [String] = []
    if let token { status.append("\"token\": \"\(token)\"") }
    if let expiration { status.append("\"expirationTimestamp\": \"\(expiration)\"") }
    if let certificate { status.append("\"clientCertificateData\": \"\(certificate)\"") }
    if let key { status.append("\"clientKeyData\": \"\(key)\"") }
    return "{\"apiVersion\": \"\(apiVersion)\", \"kind\": \"ExecCredential\", \"status\": {\(status.joined(separator: ", "))}}\n"
}

/// A shell-script exec plugin in a scratch directory. Each run appends a line to `runs`, saves
/// its arguments (one a line), `KUBERNETES_EXEC_INFO` and `PLUGIN_REGION` and `INHERITED`, then
/// prints the file `stdout`, writes the file `stderr` to stderr and exits with `status`: the
/// test changes those files to change what the next run does.
struct TestPlugin {
    let directory: ScratchDirectory
    /// The script's path.
    let path: String

    /// Writes the script as `bin/NAME` and what its first run prints.
    init(_ directory: ScratchDirectory, name: String = "plugin", stdout: String = makeExecCredential(), stderr: String = "", status: Int = 0) throws {
        self.directory = directory
        let d = directory.path
        path = try directory.write("bin/\(name)", """
            #!/bin/sh
            echo run >> '\(d)/runs'
            printf '%s\\n' "$@" > '\(d)/args'
            printf '%s' "$KUBERNETES_EXEC_INFO" > '\(d)/exec-info'
            printf '%s' "${PLUGIN_REGION-unset} ${INHERITED-unset}" > '\(d)/env'
            cat '\(d)/stdout'
            cat '\(d)/stderr' >&2
            exit $(cat '\(d)/status')

            """, executable: true)
        try respond(stdout: stdout, stderr: stderr, status: status)
    }

    /// What the next run prints and how it exits.
    func respond(stdout: String, stderr: String = "", status: Int = 0) throws {
        try directory.write("stdout", stdout)
        try directory.write("stderr", stderr)
        try directory.write("status", "\(status)\n")
    }

    /// How many times it has run.
    func runs() throws -> Int { try directory.read("runs")?.split(separator: "\n").count ?? 0 }

    /// The request it was given in its last run.
    func execInfo() throws -> [String: Any] {
        let text = try directory.read("exec-info") ?? ""
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }

    /// An exec configuration running it.
    func config(_ apiVersion: String = v1beta1, args: [String] = [], env: [ExecConfig.EnvVar] = [], provideClusterInfo: Bool = false,
                interactiveMode: String? = nil) -> ExecConfig {
        ExecConfig(apiVersion: apiVersion, command: path, args: args, env: env, installHint: nil, provideClusterInfo: provideClusterInfo,
                   interactiveMode: interactiveMode)
    }
}

/// Credentials for `credentials` on a test connection, with a small environment.
func makeCredentials(_ credentials: CredentialConfig, tls: TLSConfig = TLSConfig(), environment: [String: String] = ["PATH": "/usr/bin:/bin"],
                     timeout: Double = 30, clock: TestClock = TestClock(Date(timeIntervalSince1970: 1_900_000_000))) -> Credentials {
    Credentials(ClusterConnection(server: "https://api.test:6443", tls: tls, credentials: credentials, origin: "test"),
                environment: environment, pluginTimeout: timeout, now: clock.now)
}

/// The error `current()` throws, or nil (recorded as an issue) when it succeeds.
func credentialError(_ credentials: Credentials) -> CredentialError? {
    do throws(CredentialError) {
        let credential = try credentials.current()
        Issue.record("got \(credential) instead of an error")
        return nil
    } catch {
        return error
    }
}

/// Rewrites a file in place (same inode) and puts its times back, so that its identity only
/// changes if its size does.
func rewriteKeepingTimes(_ path: String, _ text: String) throws {
    var info = stat()
    try #require(stat(path, &info) == 0)
    let fd = open(path, O_WRONLY | O_TRUNC)
    try #require(fd >= 0)
    let written = text.utf8CString.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
    close(fd)
    try #require(written == text.utf8.count)
    var times = [info.st_atim, info.st_mtim]
    try #require(utimensat(AT_FDCWD, path, &times, 0) == 0)
}

@Suite struct CredentialsTests {
    // MARK: - Static

    @Test func staticCredentials() throws {
        #expect(try makeCredentials(.token("abc")).current() == Credential(authorization: "Bearer abc"))
        #expect(try makeCredentials(.basic(username: "alice", password: "s3cret")).current() == Credential(authorization: "Basic YWxpY2U6czNjcmV0"))
        #expect(try makeCredentials(.none).current() == Credential())
    }

    // MARK: - Token file

    @Test func tokenFileIsTrimmedAndFollowsRotation() throws {
        try withScratchDirectory { directory in
            let path = try directory.write("token", "first-token\n\n")
            let credentials = makeCredentials(.tokenFile(path))
            #expect(try credentials.current() == Credential(authorization: "Bearer first-token"))
            // The kubelet's atomic writer: a new file renamed into place.
            try directory.write("token.new", "second-token\n")
            try FileManager.default.removeItem(atPath: path)
            try FileManager.default.moveItem(atPath: directory.file("token.new"), toPath: path)
            #expect(try credentials.current() == Credential(authorization: "Bearer second-token"))
            // Rewritten in place to another size.
            try rewriteKeepingTimes(path, "third-token-longer")
            #expect(try credentials.current() == Credential(authorization: "Bearer third-token-longer"))
        }
    }

    @Test func tokenFileIsCachedWhileUnchangedAndReReadAfterInvalidate() throws {
        try withScratchDirectory { directory in
            let path = try directory.write("token", "aaaa")
            let credentials = makeCredentials(.tokenFile(path))
            #expect(try credentials.current() == Credential(authorization: "Bearer aaaa"))
            try rewriteKeepingTimes(path, "bbbb")
            #expect(try credentials.current() == Credential(authorization: "Bearer aaaa"))
            credentials.invalidate(ifCurrent: Credential(authorization: "Bearer something-else"))
            #expect(try credentials.current() == Credential(authorization: "Bearer aaaa"))
            credentials.invalidate()
            #expect(try credentials.current() == Credential(authorization: "Bearer bbbb"))
            try rewriteKeepingTimes(path, "cccc")
            credentials.invalidate(ifCurrent: Credential(authorization: "Bearer bbbb"))
            #expect(try credentials.current() == Credential(authorization: "Bearer cccc"))
        }
    }

    @Test func tokenFileErrorsNameThePath() throws {
        try withScratchDirectory { directory in
            let path = try directory.write("token", " \n")
            let empty = credentialError(makeCredentials(.tokenFile(path)))
            #expect(empty == CredentialError(code: .tokenFile, source: "token file \(path)", reason: "is empty"))
            let missing = directory.file("missing")
            #expect(credentialError(makeCredentials(.tokenFile(missing)))?.description == "token file \(missing): cannot read: No such file or directory")
            // A token that disappears after being read is an error, not the stale token.
            let credentials = makeCredentials(.tokenFile(path))
            try directory.write("token", "t")
            #expect(try credentials.current() == Credential(authorization: "Bearer t"))
            try FileManager.default.removeItem(atPath: path)
            #expect(credentialError(credentials)?.description == "token file \(path): cannot read: No such file or directory")
        }
    }

    // MARK: - Exec: caching

    @Test func execCredentialIsCachedWithoutExpiryUntilInvalidated() throws {
        try withScratchDirectory { directory in
            let plugin = try TestPlugin(directory, stdout: makeExecCredential(token: "one"))
            let credentials = makeCredentials(.exec(plugin.config()))
            #expect(try credentials.current() == Credential(authorization: "Bearer one"))
            #expect(try credentials.current() == Credential(authorization: "Bearer one"))
            #expect(try plugin.runs() == 1)
            try plugin.respond(stdout: makeExecCredential(token: "two"))
            credentials.invalidate(ifCurrent: Credential(authorization: "Bearer stale"))
            #expect(try credentials.current() == Credential(authorization: "Bearer one"))
            #expect(try plugin.runs() == 1)
            credentials.invalidate(ifCurrent: Credential(authorization: "Bearer one"))
            #expect(try credentials.current() == Credential(authorization: "Bearer two"))
            #expect(try plugin.runs() == 2)
            try plugin.respond(stdout: makeExecCredential(token: "three"))
            credentials.invalidate()
            #expect(try credentials.current() == Credential(authorization: "Bearer three"))
            #expect(try plugin.runs() == 3)
        }
    }

    @Test(arguments: ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00.123456789Z", "2030-01-01T01:00:00+01:00"])
    func execCredentialIsRenewedShortlyBeforeItExpires(expiration: String) throws {
        try withScratchDirectory { directory in
            let expiry = Date(timeIntervalSince1970: 1_893_456_000)  // 2030-01-01T00:00:00Z
            let clock = TestClock(expiry - 60)
            let plugin = try TestPlugin(directory, stdout: makeExecCredential(token: "early", expiration: expiration))
            let credentials = makeCredentials(.exec(plugin.config()), clock: clock)
            #expect(try credentials.current() == Credential(authorization: "Bearer early"))
            try plugin.respond(stdout: makeExecCredential(token: "late"))
            clock.advance(by: 49)  // 11 s left: still good
            #expect(try credentials.current() == Credential(authorization: "Bearer early"))
            #expect(try plugin.runs() == 1)
            clock.advance(by: 2)  // 9 s left: within the skew
            #expect(try credentials.current() == Credential(authorization: "Bearer late"))
            #expect(try plugin.runs() == 2)
            // No expiry this time: cached from now on.
            clock.advance(by: 3600)
            #expect(try credentials.current() == Credential(authorization: "Bearer late"))
            #expect(try plugin.runs() == 2)
        }
    }

    @Test func failedRunsAreNotCached() throws {
        try withScratchDirectory { directory in
            let plugin = try TestPlugin(directory, stdout: "", stderr: "try again", status: 1)
            let credentials = makeCredentials(.exec(plugin.config()))
            #expect(credentialError(credentials)?.code == .pluginFailed)
            try plugin.respond(stdout: makeExecCredential(token: "ok"))
            #expect(try credentials.current() == Credential(authorization: "Bearer ok"))
            #expect(try plugin.runs() == 2)
        }
    }

    // MARK: - Exec: versions and what the plugin gets

    @Test func v1NeedsInteractiveModeAndNeverAlways() throws {
        try withScratchDirectory { directory in
            let plugin = try TestPlugin(directory, stdout: makeExecCredential(v1, token: "v1-token"))
            #expect(try makeCredentials(.exec(plugin.config(v1, interactiveMode: "Never"))).current() == Credential(authorization: "Bearer v1-token"))
            #expect(try makeCredentials(.exec(plugin.config(v1, interactiveMode: "IfAvailable"))).current().authorization == "Bearer v1-token")
            let source = "exec plugin \(plugin.path)"
            #expect(credentialError(makeCredentials(.exec(plugin.config(v1)))) == CredentialError(
                code: .pluginConfiguration, source: source, reason: "interactiveMode must be set for \(v1) (Never or IfAvailable)"))
            #expect(credentialError(makeCredentials(.exec(plugin.config(v1, interactiveMode: "Always"))))?.reason
                == "interactiveMode Always needs a terminal, and Picket has none")
            #expect(credentialError(makeCredentials(.exec(plugin.config(v1, interactiveMode: "Sometimes"))))?.reason
                == "interactiveMode \"Sometimes\" is not Never, IfAvailable or Always")
            #expect(credentialError(makeCredentials(.exec(plugin.config("client.authentication.k8s.io/v1alpha1"))))?.reason
                == "apiVersion \"client.authentication.k8s.io/v1alpha1\" is not supported (\(v1) or \(v1beta1))")
            #expect(try plugin.runs() == 2)
        }
    }

    @Test func argsEnvironmentAndRequestReachThePlugin() throws {
        try withScratchDirectory { directory in
            let plugin = try TestPlugin(directory)
            let config = plugin.config(args: ["--cluster", "prod two"], env: [.init(name: "PLUGIN_REGION", value: "eu-west-1")])
            let environment = ["PATH": "/usr/bin:/bin", "INHERITED": "yes", "PLUGIN_REGION": "overridden"]
            #expect(try makeCredentials(.exec(config), environment: environment).current().authorization == "Bearer plugin-token")
            #expect(try directory.read("args") == "--cluster\nprod two\n")
            #expect(try directory.read("env") == "eu-west-1 yes")
            let info = try plugin.execInfo()
            #expect(info["apiVersion"] as? String == v1beta1)
            #expect(info["kind"] as? String == "ExecCredential")
            let spec = try #require(info["spec"] as? [String: Any])
            #expect(spec["interactive"] as? Bool == false)
            #expect(spec["cluster"] == nil)
        }
    }

    @Test func clusterInfoWhenProvideClusterInfo() throws {
        try withScratchDirectory { directory in
            let plugin = try TestPlugin(directory)
            let caFile = try directory.write("ca.crt", "CA FROM FILE")
            let tls = TLSConfig(certificateAuthority: .file(caFile), serverName: "api.internal")
            #expect(try makeCredentials(.exec(plugin.config(provideClusterInfo: true)), tls: tls).current().authorization == "Bearer plugin-token")
            let cluster = try #require((try plugin.execInfo()["spec"] as? [String: Any])?["cluster"] as? [String: Any])
            #expect(cluster["server"] as? String == "https://api.test:6443")
            #expect(cluster["certificate-authority-data"] as? String == Data("CA FROM FILE".utf8).base64EncodedString())
            #expect(cluster["tls-server-name"] as? String == "api.internal")
            #expect(cluster["insecure-skip-tls-verify"] == nil)

            let insecure = TLSConfig(insecureSkipVerify: true)
            #expect(try makeCredentials(.exec(plugin.config(provideClusterInfo: true)), tls: insecure).current().authorization != nil)
            let second = try #require((try plugin.execInfo()["spec"] as? [String: Any])?["cluster"] as? [String: Any])
            #expect(second["insecure-skip-tls-verify"] as? Bool == true)
            #expect(second["certificate-authority-data"] == nil)

            let missingCA = TLSConfig(certificateAuthority: .file(directory.file("gone.crt")))
            #expect(credentialError(makeCredentials(.exec(plugin.config(provideClusterInfo: true)), tls: missingCA))?.reason
                == "cannot read the certificate authority \(directory.file("gone.crt")) for provideClusterInfo: No such file or directory")
        }
    }

    @Test func clientCertificateFromThePlugin() throws {
        try withScratchDirectory { directory in
            let certificate = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"
            let key = "-----BEGIN EC PRIVATE KEY-----\\nMHc\\n-----END EC PRIVATE KEY-----\\n"
            let plugin = try TestPlugin(directory, stdout: makeExecCredential(token: nil, certificate: certificate, key: key))
            let credential = try makeCredentials(.exec(plugin.config())).current()
            #expect(credential.authorization == nil)
            #expect(credential.clientCertificate == Array("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".utf8))
            #expect(credential.clientKey == Array("-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n".utf8))
        }
    }

    @Test func commandFoundThroughPATH() throws {
        try withScratchDirectory { directory in
            let plugin = try TestPlugin(directory, name: "kube-token")
            let config = ExecConfig(apiVersion: v1beta1, command: "kube-token")
            let environment = ["PATH": "/nonexistent:\(directory.file("bin")):/usr/bin:/bin"]
            #expect(try makeCredentials(.exec(config), environment: environment).current().authorization == "Bearer plugin-token")
            #expect(try plugin.runs() == 1)
        }
    }

    // MARK: - Exec: failures

    @Test func notFoundShowsTheInstallHint() throws {
        try withScratchDirectory { directory in
            let byName = ExecConfig(apiVersion: v1beta1, command: "no-such-plugin", installHint: "install it with: brew install no-such-plugin")
            #expect(credentialError(makeCredentials(.exec(byName), environment: ["PATH": directory.path])) == CredentialError(
                code: .pluginNotFound, source: "exec plugin no-such-plugin",
                reason: "not found in PATH; install hint: install it with: brew install no-such-plugin"))
            let byPath = ExecConfig(apiVersion: v1beta1, command: directory.file("missing"))
            #expect(credentialError(makeCredentials(.exec(byPath)))?.description == "exec plugin \(directory.file("missing")): not found")
            let notExecutable = ExecConfig(apiVersion: v1beta1, command: try directory.write("plain", "#!/bin/sh\n"))
            #expect(credentialError(makeCredentials(.exec(notExecutable)))?.reason == "is not an executable file")
        }
    }

    @Test func nonZeroExitShowsStderr() throws {
        try withScratchDirectory { directory in
            let stderr = "\n  error: token expired  \n" + (1...12).map { "detail \($0)" }.joined(separator: "\n")
            let plugin = try TestPlugin(directory, stdout: "", stderr: stderr, status: 3)
            let error = credentialError(makeCredentials(.exec(plugin.config())))
            let shown = (["error: token expired"] + (1...7).map { "detail \($0)" }).joined(separator: "\n")
            #expect(error == CredentialError(code: .pluginFailed, source: "exec plugin \(plugin.path)", reason: "exited with status 3: \(shown)\n…"))
            try plugin.respond(stdout: "", stderr: "", status: 1)
            #expect(credentialError(makeCredentials(.exec(plugin.config())))?.reason == "exited with status 1 (nothing on stderr)")
        }
    }

    @Test func timedOutPluginIsKilled() throws {
        try withScratchDirectory { directory in
            let path = try directory.write("slow", "#!/bin/sh\nexec sleep 20\n", executable: true)
            let credentials = makeCredentials(.exec(ExecConfig(apiVersion: v1beta1, command: path)), timeout: 0.3)
            #expect(credentialError(credentials) == CredentialError(
                code: .pluginTimedOut, source: "exec plugin \(path)", reason: "did not finish within 0.3 s and was killed"))
        }
    }

    /// Output a plugin may print, and the reason it is refused with.
    struct BadOutput: CustomTestStringConvertible, Sendable {
        var name: String
        var stdout: String
        var reason: String
        var testDescription: String { name }
    }

    static let badOutputs = [
        BadOutput(name: "empty", stdout: "\n", reason: "printed nothing on stdout"),
        BadOutput(name: "not JSON", stdout: "token=abc", reason: "printed 9 bytes that are not JSON"),
        BadOutput(name: "other version", stdout: makeExecCredential(v1), reason: "printed apiVersion \"\(v1)\"; the kubeconfig asks for \"\(v1beta1)\""),
        BadOutput(name: "other kind", stdout: "{\"apiVersion\": \"\(v1beta1)\", \"kind\": \"Secret\"}",
                  reason: "printed kind \"Secret\", not ExecCredential"),
        BadOutput(name: "no kind", stdout: "{\"apiVersion\": \"\(v1beta1)\"}", reason: "printed kind \"\", not ExecCredential"),
        BadOutput(name: "no status", stdout: "{\"apiVersion\": \"\(v1beta1)\", \"kind\": \"ExecCredential\"}", reason: "printed no status"),
        BadOutput(name: "empty status", stdout: makeExecCredential(token: nil), reason: "printed neither a token nor a client certificate"),
        BadOutput(name: "certificate alone", stdout: makeExecCredential(token: nil, certificate: "C"),
                  reason: "printed a client certificate without its key"),
        BadOutput(name: "key alone", stdout: makeExecCredential(key: "K"), reason: "printed a client key without its certificate"),
        BadOutput(name: "bad timestamp", stdout: makeExecCredential(expiration: "tomorrow"),
                  reason: "status.expirationTimestamp \"tomorrow\" is not an RFC 3339 time"),
        BadOutput(name: "timestamp without zone", stdout: makeExecCredential(expiration: "2030-01-01T00:00:00"),
                  reason: "status.expirationTimestamp \"2030-01-01T00:00:00\" is not an RFC 3339 time"),
    ]

    @Test(arguments: badOutputs) func badOutputIsRefused(_ output: BadOutput) throws {
        try withScratchDirectory { directory in
            let plugin = try TestPlugin(directory, stdout: output.stdout)
            let error = credentialError(makeCredentials(.exec(plugin.config())))
            #expect(error == CredentialError(code: .pluginOutput, source: "exec plugin \(plugin.path)", reason: output.reason))
        }
    }

    @Test func wrongTypesNameTheField() throws {
        try withScratchDirectory { directory in
            let plugin = try TestPlugin(directory, stdout: "{\"apiVersion\": \"\(v1beta1)\", \"kind\": \"ExecCredential\", \"status\": {\"token\": 42}}")
            let reason = credentialError(makeCredentials(.exec(plugin.config())))?.reason ?? ""
            #expect(reason.hasPrefix("printed JSON that is not an ExecCredential: status.token: "))
            try plugin.respond(stdout: "[1, 2]")
            let array = credentialError(makeCredentials(.exec(plugin.config())))?.reason ?? ""
            #expect(array.hasPrefix("printed JSON that is not an ExecCredential: "))
            #expect(!array.contains("not JSON"))
        }
    }
}
