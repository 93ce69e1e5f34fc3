import Foundation
import KubeClient
import Testing

/// A kubeconfig of one context `NAME` with cluster `NAME-cluster` at `server` and user
/// `NAME-user` whose `user` section is `user` (indented lines), current when `current`.
func makeKubeconfig(context name: String = "dev", server: String = "https://dev.example:6443", user: String = "    token: dev-token",
                    current: Bool = true, cluster: String = "") -> String {
    """
    apiVersion: v1
    kind: Config
    \(current ? "current-context: \(name)" : "")
    clusters:
    - name: \(name)-cluster
      cluster:
        server: \(server)
    \(cluster)
    users:
    - name: \(name)-user
      user:
    \(user)
    contexts:
    - name: \(name)
      context:
        cluster: \(name)-cluster
        user: \(name)-user

    """
}

/// Resolves `text` written as `DIR/config`, with an empty environment.
func resolveKubeconfig(_ text: String, context: String? = nil, _ function: String = #function) throws -> ClusterConnection {
    try withScratchDirectory(function) { directory in
        let path = try directory.write("config", text)
        return try ConnectionResolver.fromKubeconfig(path: path, context: context, environment: [:])
    }
}

/// The error resolving `text` (written as `DIR/config`) throws, with `DIR` written as `DIR`.
func kubeconfigError(_ text: String, context: String? = nil, _ function: String = #function) throws -> KubeConfigError? {
    try withScratchDirectory(function) { directory -> KubeConfigError? in
        let path = try directory.write("config", text)
        do throws(KubeConfigError) {
            let connection = try ConnectionResolver.fromKubeconfig(path: path, context: context, environment: [:])
            Issue.record("resolved to \(connection) instead of failing")
            return nil
        } catch {
            return KubeConfigError(code: error.code, source: error.source.replacingOccurrences(of: directory.path, with: "DIR"), reason: error.reason)
        }
    }
}

@Suite struct KubeConfigTests {
    // MARK: - Fields

    @Test func contextGivesServerTLSTokenNamespaceAndOrigin() throws {
        let ca = Data("CA PEM".utf8).base64EncodedString()
        let text = """
            current-context: dev
            clusters:
            - name: c
              cluster:
                server: https://api.example:6443/
                certificate-authority-data: \(ca)
                tls-server-name: api.internal
            users:
            - name: u
              user:
                token: abc
            contexts:
            - name: dev
              context: {cluster: c, user: u, namespace: team-a}
            """
        try withScratchDirectory { directory in
            let path = try directory.write("config", text)
            let connection = try ConnectionResolver.fromKubeconfig(path: path, context: nil, environment: [:])
            #expect(connection.server == "https://api.example:6443")
            #expect(connection.tls == TLSConfig(certificateAuthority: .data(Array("CA PEM".utf8)), serverName: "api.internal"))
            #expect(connection.credentials == .token("abc"))
            #expect(connection.namespace == "team-a")
            #expect(connection.origin == "kubeconfig \(path), context dev")
        }
    }

    @Test func insecureSkipVerifyAndBasicCredentials() throws {
        let connection = try resolveKubeconfig(
            makeKubeconfig(user: "    username: alice\n    password: s3cret", cluster: "    insecure-skip-tls-verify: true"))
        #expect(connection.tls.insecureSkipVerify)
        #expect(connection.tls.certificateAuthority == nil)
        #expect(connection.credentials == .basic(username: "alice", password: "s3cret"))
    }

    @Test func execSectionIsReadWhole() throws {
        let user = """
                exec:
                  apiVersion: client.authentication.k8s.io/v1
                  command: /usr/local/bin/get-token
                  args: [--cluster, prod]
                  env:
                  - {name: REGION, value: eu-west-1}
                  - name: EMPTY
                  installHint: install get-token
                  provideClusterInfo: true
                  interactiveMode: Never
            """
        let connection = try resolveKubeconfig(makeKubeconfig(user: user))
        #expect(connection.credentials == .exec(ExecConfig(
            apiVersion: "client.authentication.k8s.io/v1", command: "/usr/local/bin/get-token", args: ["--cluster", "prod"],
            env: [.init(name: "REGION", value: "eu-west-1"), .init(name: "EMPTY", value: "")], installHint: "install get-token",
            provideClusterInfo: true, interactiveMode: "Never")))
    }

    @Test func contextWithoutUserIsAnonymous() throws {
        let text = """
            current-context: dev
            clusters: [{name: c, cluster: {server: "https://h"}}]
            contexts: [{name: dev, context: {cluster: c}}]
            """
        let connection = try resolveKubeconfig(text)
        #expect(connection.credentials == CredentialConfig.none)
        #expect(connection.tls.clientCertificate == nil)
    }

    // MARK: - Precedence

    @Test func dataFieldsWinOverFileFields() throws {
        let data = { (text: String) in Data(text.utf8).base64EncodedString() }
        let user = """
                client-certificate: cert.pem
                client-certificate-data: \(data("CERT"))
                client-key: key.pem
                client-key-data: \(data("KEY"))
            """
        let cluster = "    certificate-authority: ca.pem\n    certificate-authority-data: \(data("CA"))"
        let connection = try resolveKubeconfig(makeKubeconfig(user: user, cluster: cluster))
        #expect(connection.tls.certificateAuthority == .data(Array("CA".utf8)))
        #expect(connection.tls.clientCertificate == .data(Array("CERT".utf8)))
        #expect(connection.tls.clientKey == .data(Array("KEY".utf8)))
    }

    @Test func tokenWinsOverTokenFile() throws {
        let connection = try resolveKubeconfig(makeKubeconfig(user: "    token: inline\n    tokenFile: /somewhere/token"))
        #expect(connection.credentials == .token("inline"))
    }

    @Test func relativePathsResolveAgainstTheDefiningFilesDirectory() throws {
        try withScratchDirectory { directory in
            let user = """
                    client-certificate: certs/client.pem
                    client-key: ./certs/client-key.pem
                """
            let other = """
                clusters: [{name: c, cluster: {server: "https://h", certificate-authority: ca.pem}}]
                users:
                - name: file-user
                  user: {tokenFile: secrets/token}
                - name: exec-user
                  user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: bin/plugin}}
                - name: path-user
                  user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: kubelogin}}
                contexts:
                - {name: file, context: {cluster: c, user: file-user}}
                - {name: exec, context: {cluster: c, user: exec-user}}
                - {name: path, context: {cluster: c, user: path-user}}
                """
            let first = try directory.write("home/config", makeKubeconfig(user: user, cluster: "    certificate-authority: /abs/ca.pem"))
            let second = try directory.write("shared/sub/config", other)
            let environment = ["KUBECONFIG": "\(first):\(second)"]
            let dev = try ConnectionResolver.fromKubeconfig(path: nil, context: nil, environment: environment)
            #expect(dev.tls.certificateAuthority == .file("/abs/ca.pem"))
            #expect(dev.tls.clientCertificate == .file(directory.file("home/certs/client.pem")))
            #expect(dev.tls.clientKey == .file(directory.file("home/certs/client-key.pem")))
            let file = try ConnectionResolver.fromKubeconfig(path: nil, context: "file", environment: environment)
            #expect(file.tls.certificateAuthority == .file(directory.file("shared/sub/ca.pem")))
            #expect(file.credentials == .tokenFile(directory.file("shared/sub/secrets/token")))
            let exec = try ConnectionResolver.fromKubeconfig(path: nil, context: "exec", environment: environment)
            #expect(exec.credentials == .exec(ExecConfig(apiVersion: "client.authentication.k8s.io/v1beta1", command: directory.file("shared/sub/bin/plugin"))))
            let path = try ConnectionResolver.fromKubeconfig(path: nil, context: "path", environment: environment)
            #expect(path.credentials == .exec(ExecConfig(apiVersion: "client.authentication.k8s.io/v1beta1", command: "kubelogin")))
        }
    }

    // MARK: - Choosing the file and the context

    @Test func kubeconfigListMergesFirstDefinitionWins() throws {
        try withScratchDirectory { directory in
            let first = try directory.write("a", """
                clusters: [{name: shared, cluster: {server: "https://from-a"}}]
                users: [{name: u, user: {token: token-a}}]
                contexts: [{name: one, context: {cluster: shared, user: u}}]
                """)
            let second = try directory.write("b", """
                current-context: two
                clusters:
                - {name: shared, cluster: {server: "https://from-b"}}
                - {name: only-b, cluster: {server: "https://only-b"}}
                users: [{name: u, user: {token: token-b}}]
                contexts:
                - {name: one, context: {cluster: only-b, user: u}}
                - {name: two, context: {cluster: shared, user: u, namespace: b}}
                """)
            let third = try directory.write("c", "current-context: one\n")
            let list = "\(directory.file("missing")):\(first)::\(second):\(third)"
            let current = try ConnectionResolver.fromKubeconfig(path: nil, context: nil, environment: ["KUBECONFIG": list])
            #expect(current.origin == "kubeconfig \(second), context two")
            #expect(current.server == "https://from-a")
            #expect(current.credentials == .token("token-a"))
            #expect(current.namespace == "b")
            let one = try ConnectionResolver.fromKubeconfig(path: nil, context: "one", environment: ["KUBECONFIG": list])
            #expect(one.server == "https://from-a")
            #expect(one.origin == "kubeconfig \(first), context one")
        }
    }

    @Test func currentContextFromTheFirstFileThatSetsIt() throws {
        try withScratchDirectory { directory in
            let first = try directory.write("a", makeKubeconfig(context: "alpha", server: "https://alpha", current: false))
            let second = try directory.write("b", makeKubeconfig(context: "beta", server: "https://beta"))
            let third = try directory.write("c", makeKubeconfig(context: "gamma", server: "https://gamma"))
            let connection = try ConnectionResolver.fromKubeconfig(path: nil, context: nil, environment: ["KUBECONFIG": "\(first):\(second):\(third)"])
            #expect(connection.server == "https://beta")
        }
    }

    @Test func explicitContextBeatsCurrentContext() throws {
        let text = makeKubeconfig(context: "dev") + """
            - name: prod
              context: {cluster: dev-cluster, user: dev-user, namespace: prod-ns}
            """
        #expect(try resolveKubeconfig(text).namespace == nil)
        #expect(try resolveKubeconfig(text, context: "prod").namespace == "prod-ns")
    }

    @Test func explicitPathIgnoresKubeconfigVariable() throws {
        try withScratchDirectory { directory in
            let flag = try directory.write("flag", makeKubeconfig(server: "https://flag"))
            let listed = try directory.write("listed", makeKubeconfig(server: "https://listed"))
            let connection = try ConnectionResolver.fromKubeconfig(path: flag, context: nil, environment: ["KUBECONFIG": listed])
            #expect(connection.server == "https://flag")
        }
    }

    @Test func homeConfigWhenNothingElse() throws {
        try withScratchDirectory { directory in
            try directory.write("home/.kube/config", makeKubeconfig(server: "https://home"))
            let connection = try ConnectionResolver.fromKubeconfig(path: nil, context: nil, environment: ["HOME": directory.file("home")])
            #expect(connection.server == "https://home")
        }
    }

    // MARK: - Errors

    @Test func unknownContext() throws {
        let error = try kubeconfigError(makeKubeconfig(), context: "prod")
        #expect(error?.description == "kubeconfig DIR/config: context \"prod\" is not defined")
        #expect(error?.code == .undefined)
    }

    @Test func unknownCurrentContext() throws {
        let error = try kubeconfigError(makeKubeconfig().replacingOccurrences(of: "current-context: dev", with: "current-context: gone"))
        #expect(error?.description == "kubeconfig DIR/config: current-context \"gone\" is not defined")
    }

    @Test func noContextAtAll() throws {
        let error = try kubeconfigError(makeKubeconfig(current: false))
        #expect(error?.description == "kubeconfig DIR/config: no context given and current-context is not set")
        #expect(error?.code == .noContext)
    }

    @Test func missingCluster() throws {
        let error = try kubeconfigError(makeKubeconfig().replacingOccurrences(of: "cluster: dev-cluster", with: "cluster: c1"))
        #expect(error?.description == "kubeconfig DIR/config: context \"dev\": cluster \"c1\" is not defined")
    }

    @Test func contextWithoutCluster() throws {
        let error = try kubeconfigError(makeKubeconfig().replacingOccurrences(of: "cluster: dev-cluster", with: "namespace: x"))
        #expect(error?.description == "kubeconfig DIR/config: contexts[0].context.cluster: is not set")
    }

    @Test func missingUser() throws {
        let error = try kubeconfigError(makeKubeconfig().replacingOccurrences(of: "user: dev-user", with: "user: nobody"))
        #expect(error?.description == "kubeconfig DIR/config: context \"dev\": user \"nobody\" is not defined")
    }

    @Test func badBase64() throws {
        let user = "    client-certificate-data: Q0VSVA==\n    client-key-data: not*base64"
        let error = try kubeconfigError(makeKubeconfig(user: user))
        #expect(error?.description == "kubeconfig DIR/config: users[0].user.client-key-data: is not valid base64")
        #expect(error?.code == .invalidField)
    }

    @Test func proxyURLIsRefused() throws {
        let error = try kubeconfigError(makeKubeconfig(cluster: "    proxy-url: http://proxy:3128"))
        #expect(error?.description == "kubeconfig DIR/config: clusters[0].cluster.proxy-url: is not supported: Picket connects to the API server directly")
        #expect(error?.code == .unsupported)
    }

    @Test func authProviderIsRefused() throws {
        let error = try kubeconfigError(makeKubeconfig(user: "    auth-provider:\n      name: gcp"))
        #expect(error?.description == "kubeconfig DIR/config: users[0].user.auth-provider: auth-provider plugins are not supported; use an exec plugin")
        #expect(error?.code == .unsupported)
    }

    @Test func impersonationIsRefused() throws {
        let error = try kubeconfigError(makeKubeconfig(user: "    token: t\n    as: admin"))
        #expect(error?.description == "kubeconfig DIR/config: users[0].user.as: impersonation is not supported")
    }

    @Test func unsupportedSettingsOfUnusedEntriesAreIgnored() throws {
        let text = makeKubeconfig() + """
            - name: other
              context: {cluster: proxied, user: dev-user}
            """
        let withProxy = text.replacingOccurrences(of: "users:", with: """
            - name: proxied
              cluster: {server: "https://p", proxy-url: "http://proxy"}
            users:
            """)
        #expect(try resolveKubeconfig(withProxy).server == "https://dev.example:6443")
    }

    @Test func yamlSyntaxError() throws {
        let error = try kubeconfigError("clusters: [\n  - name: c\n")
        #expect(error?.description.hasPrefix("kubeconfig DIR/config: does not parse as YAML: ") == true)
        #expect(error?.code == .notYAML)
    }

    @Test func wrongShapes() throws {
        #expect(try kubeconfigError("- a\n- b\n")?.description == "kubeconfig DIR/config: the document: is not a mapping")
        #expect(try kubeconfigError("clusters: {a: b}\n")?.description == "kubeconfig DIR/config: clusters: is not a list")
        #expect(try kubeconfigError("clusters: [{cluster: {server: x}}]\n")?.description == "kubeconfig DIR/config: clusters[0].name: is not set")
        let twice = "clusters: [{name: a, cluster: {server: x}}, {name: a, cluster: {server: y}}]\n"
        #expect(try kubeconfigError(twice)?.description == "kubeconfig DIR/config: clusters[1].name: \"a\" is defined twice in this file")
        let list = makeKubeconfig(cluster: "    insecure-skip-tls-verify: [x]")
        #expect(try kubeconfigError(list)?.description == "kubeconfig DIR/config: clusters[0].cluster.insecure-skip-tls-verify: is not true or false")
        let server = makeKubeconfig(server: "dev.example:6443")
        #expect(try kubeconfigError(server)?.description == "kubeconfig DIR/config: clusters[0].cluster.server: \"dev.example:6443\" is not an https:// or http:// URL")
        let noServer = makeKubeconfig().replacingOccurrences(of: "server: https://dev.example:6443", with: "tls-server-name: x")
        #expect(try kubeconfigError(noServer)?.description == "kubeconfig DIR/config: clusters[0].cluster.server: is not set")
    }

    @Test func conflictingUserSettings() throws {
        let two = try kubeconfigError(makeKubeconfig(user: "    token: t\n    username: u\n    password: p"))
        #expect(two?.description == "kubeconfig DIR/config: users[0].user: more than one authentication method (token, username/password); only one is allowed")
        let certOnly = try kubeconfigError(makeKubeconfig(user: "    client-certificate: c.pem"))
        #expect(certOnly?.description == "kubeconfig DIR/config: users[0].user.client-key: is not set, but a client certificate is")
        let insecureWithCA = try kubeconfigError(makeKubeconfig(cluster: "    insecure-skip-tls-verify: true\n    certificate-authority: ca.pem"))
        #expect(insecureWithCA?.description
            == "kubeconfig DIR/config: clusters[0].cluster.insecure-skip-tls-verify: cannot be combined with a certificate authority (kubectl refuses it too)")
        let noCommand = try kubeconfigError(makeKubeconfig(user: "    exec: {apiVersion: client.authentication.k8s.io/v1}"))
        #expect(noCommand?.description == "kubeconfig DIR/config: users[0].user.exec.command: is not set")
        let envName = try kubeconfigError(makeKubeconfig(user: "    exec: {apiVersion: v, command: c, env: [{value: x}]}"))
        #expect(envName?.description == "kubeconfig DIR/config: users[0].user.exec.env[0].name: is not set")
    }

    @Test func unreadableFiles() throws {
        try withScratchDirectory { directory in
            let missing = directory.file("nope")
            #expect(throws: KubeConfigError(code: .unreadable, source: "kubeconfig \(missing)", reason: "cannot read: No such file or directory")) {
                try ConnectionResolver.fromKubeconfig(path: missing, context: nil, environment: [:])
            }
            #expect(throws: KubeConfigError(code: .unreadable, source: "kubeconfig \(directory.path)", reason: "cannot read: is a directory")) {
                try ConnectionResolver.fromKubeconfig(path: directory.path, context: nil, environment: [:])
            }
            let list = "\(missing):\(directory.file("also-missing"))"
            #expect(throws: KubeConfigError(code: .noConfiguration, source: "KUBECONFIG \(list)", reason: "none of these files exists")) {
                try ConnectionResolver.fromKubeconfig(path: nil, context: nil, environment: ["KUBECONFIG": list])
            }
            let home = directory.file("home")
            #expect(throws: KubeConfigError(code: .noConfiguration, source: "kubeconfig \(home)/.kube/config", reason: "does not exist")) {
                try ConnectionResolver.fromKubeconfig(path: nil, context: nil, environment: ["HOME": home])
            }
        }
    }

    @Test func unreadableFileInListIsAnError() throws {
        try withScratchDirectory { directory in
            let list = "\(directory.file("missing")):\(directory.path)"
            #expect(throws: KubeConfigError(code: .unreadable, source: "kubeconfig \(directory.path)", reason: "cannot read: is a directory")) {
                try ConnectionResolver.fromKubeconfig(path: nil, context: nil, environment: ["KUBECONFIG": list])
            }
        }
    }

    // MARK: - In-cluster

    /// A fake service-account directory and the in-cluster connection it gives.
    func inCluster(_ directory: ScratchDirectory, environment: [String: String], files: [String] = ["token", "ca.crt", "namespace"])
        throws -> ClusterConnection
    {
        for file in files { try directory.write("sa/\(file)", file == "namespace" ? "kube-system\n" : "\(file) content") }
        return try ConnectionResolver.inCluster(
            environment: environment, tokenPath: directory.file("sa/token"), caPath: directory.file("sa/ca.crt"),
            namespacePath: directory.file("sa/namespace"))
    }

    @Test func inClusterFromEnvironmentAndFiles() throws {
        try withScratchDirectory { directory in
            let connection = try inCluster(directory, environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"])
            #expect(connection == ClusterConnection(
                server: "https://10.96.0.1:443", tls: TLSConfig(certificateAuthority: .file(directory.file("sa/ca.crt"))),
                credentials: .tokenFile(directory.file("sa/token")), origin: "in-cluster", namespace: "kube-system"))
        }
    }

    @Test func inClusterIPv6HostInBrackets() throws {
        try withScratchDirectory { directory in
            let connection = try inCluster(directory, environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"],
                                           files: ["token", "ca.crt"])
            #expect(connection.server == "https://[fd00::1]:6443")
            #expect(connection.namespace == nil)
        }
    }

    @Test func inClusterErrors() throws {
        try withScratchDirectory { directory in
            #expect(throws: KubeConfigError(code: .notInCluster, source: "in-cluster", reason: "not running in a cluster: KUBERNETES_SERVICE_HOST is not set")) {
                try inCluster(directory, environment: ["KUBERNETES_SERVICE_PORT": "443"])
            }
            #expect(throws: KubeConfigError(code: .notInCluster, source: "in-cluster", reason: "not running in a cluster: KUBERNETES_SERVICE_PORT is not set")) {
                try inCluster(directory, environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1"])
            }
        }
        try withScratchDirectory { directory in
            let environment = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
            let token = directory.file("sa/token")
            #expect(throws: KubeConfigError(code: .unreadable, source: "in-cluster",
                                            reason: "service account token \(token): cannot read: No such file or directory")) {
                try inCluster(directory, environment: environment, files: ["ca.crt"])
            }
            try directory.write("sa/token", "t")
            let ca = directory.file("sa/ca.crt")
            try FileManager.default.removeItem(atPath: ca)
            #expect(throws: KubeConfigError(code: .unreadable, source: "in-cluster", reason: "cluster CA \(ca): cannot read: No such file or directory")) {
                try ConnectionResolver.inCluster(environment: environment, tokenPath: token, caPath: ca, namespacePath: directory.file("sa/namespace"))
            }
        }
    }

    // MARK: - The daemon's order

    /// A scratch layout for `resolve`: a flag file, a KUBECONFIG file, a home config and a
    /// service account, each naming a different server.
    func resolveOrder(_ directory: ScratchDirectory, flag: Bool, kubeconfig: Bool, inCluster: Bool, home: Bool,
                      context: String? = nil, serviceAccount: Bool = true) throws -> String {
        var environment: [String: String] = ["HOME": directory.file("home")]
        if home { try directory.write("home/.kube/config", makeKubeconfig(server: "https://home")) }
        if kubeconfig { environment["KUBECONFIG"] = try directory.write("listed", makeKubeconfig(server: "https://listed")) }
        if inCluster {
            environment["KUBERNETES_SERVICE_HOST"] = "10.0.0.1"
            environment["KUBERNETES_SERVICE_PORT"] = "443"
            if serviceAccount {
                for file in ["token", "ca.crt"] { try directory.write("sa/\(file)", "\(file) content") }
            }
        }
        let flagPath = flag ? try directory.write("flag", makeKubeconfig(server: "https://flag")) : nil
        let connection = try ConnectionResolver.resolve(
            kubeconfig: flagPath, context: context, environment: environment, serviceAccount: directory.file("sa"))
        return connection.server
    }

    @Test func resolveOrderFlagThenKubeconfigThenInClusterThenHome() throws {
        try withScratchDirectory { directory throws in
            #expect(try resolveOrder(directory, flag: true, kubeconfig: true, inCluster: true, home: true) == "https://flag")
        }
        try withScratchDirectory { directory throws in
            #expect(try resolveOrder(directory, flag: false, kubeconfig: true, inCluster: true, home: true) == "https://listed")
        }
        try withScratchDirectory { directory throws in
            #expect(try resolveOrder(directory, flag: false, kubeconfig: false, inCluster: true, home: true) == "https://10.0.0.1:443")
        }
        try withScratchDirectory { directory throws in
            #expect(try resolveOrder(directory, flag: false, kubeconfig: false, inCluster: false, home: true) == "https://home")
        }
        try withScratchDirectory { directory throws in
            // A context exists only in kubeconfig files: asking for one skips the service account.
            #expect(try resolveOrder(directory, flag: false, kubeconfig: false, inCluster: true, home: true, context: "dev") == "https://home")
        }
    }

    @Test func resolveInClusterReportsItsErrorsRatherThanFallingBack() throws {
        try withScratchDirectory { directory in
            let error = #expect(throws: KubeConfigError.self) {
                try resolveOrder(directory, flag: false, kubeconfig: false, inCluster: true, home: true, serviceAccount: false)
            }
            #expect(error?.source == "in-cluster")
            #expect(error?.code == .unreadable)
        }
    }

    @Test func resolveWithNothingSaysWhereItLooked() throws {
        try withScratchDirectory { directory in
            let home = directory.file("home")
            let reason = "does not exist, KUBECONFIG is not set and KUBERNETES_SERVICE_HOST is not set (not running in a cluster)"
            #expect(throws: KubeConfigError(code: .noConfiguration, source: "kubeconfig \(home)/.kube/config", reason: reason)) {
                try resolveOrder(directory, flag: false, kubeconfig: false, inCluster: false, home: false)
            }
        }
    }
}
