// The test API server (Tests/APIServer/kube-test-apiserver.py) from Swift: certificates made for
// the test, the server started over HTTPS on 127.0.0.1 with them, its control surface, and
// connections for the client under test. Shared by the API client tests and the daemon's
// end-to-end tests.

import Foundation
import KubeClient
import ToolRunner

/// A test API server this test started, ended by its PID when stopped or released.
public final class TestAPIServer: @unchecked Sendable {
    /// The directory holding its certificates, ready file and log (removed on stop).
    public let directory: String
    /// The API's URL (`https://127.0.0.1:PORT`).
    public let api: String
    /// The control surface's URL (`http://127.0.0.1:PORT`).
    public let controlURL: String
    /// The test CA's certificate (it signed the server's and the client's).
    public var caPath: String { directory + "/ca.pem" }
    /// A client certificate the server accepts (CN picket-client).
    public var clientCertificatePath: String { directory + "/client.pem" }
    /// Its key.
    public var clientKeyPath: String { directory + "/client-key.pem" }
    /// A CA that signed nothing the server uses.
    public var otherCAPath: String { directory + "/other-ca.pem" }
    private let process: BackgroundTool
    private let control: Transport

    /// The server's script, found from this file's place in the package.
    public static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("APIServer/kube-test-apiserver.py").path
    }

    /// Makes certificates and starts the server; returns once it listens (at most 30 s).
    /// `tokens` maps bearer tokens to users; `objects` is JSON (a List or objects) loaded first.
    public init(
        tokens: [String: String] = ["test-token": "tester"], forbidden: [String] = [], objects: [UInt8]? = nil,
        bookmarkInterval: Double = 0.5
    ) throws {
        let directory = NSTemporaryDirectory() + "picket-apiserver-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.directory = directory
        let certs = runTool("python3", [TestAPIServer.script, "make-certs", directory], timeout: 30, environment: ProcessInfo.processInfo.environment)
        guard certs.status == 0 else {
            try? FileManager.default.removeItem(atPath: directory)
            throw TestServerError(description: "make-certs failed (\(certs.status)): \(certs.stderr)\(certs.stdout)")
        }
        var arguments = [
            TestAPIServer.script, "serve", "--cert", directory + "/server.pem", "--key", directory + "/server-key.pem",
            "--client-ca", directory + "/ca.pem", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0",
            "--ready-file", directory + "/ready.json", "--bookmark-interval", String(bookmarkInterval), "--quiet",
        ]
        for (token, user) in tokens.sorted(by: { $0.key < $1.key }) { arguments += ["--token", "\(token)=\(user)"] }
        for user in forbidden { arguments += ["--forbidden-user", user] }
        if let objects {
            let path = directory + "/objects.json"
            try Data(objects).write(to: URL(fileURLWithPath: path))
            arguments += ["--objects", path]
        }
        let process: BackgroundTool
        do {
            process = try BackgroundTool("python3", ["-u"] + arguments, logPath: directory + "/server.log")
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        let deadline = ContinuousClock.now + .seconds(60)
        var ready: [String: Any]?
        while ready == nil && ContinuousClock.now < deadline && process.exitStatus == nil {
            if let data = FileManager.default.contents(atPath: directory + "/ready.json") {
                ready = try JSONSerialization.jsonObject(with: data) as? [String: Any]
            } else {
                usleep(20_000)
            }
        }
        guard let ready, let api = ready["api"] as? String, let controlURL = ready["control"] as? String else {
            let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
            process.stop()
            try? FileManager.default.removeItem(atPath: directory)
            throw TestServerError(description: "the test API server did not become ready: \(log)")
        }
        self.process = process
        self.api = api
        self.controlURL = controlURL
        control = Transport(connection: ClusterConnection(server: controlURL, origin: "test API server control"))
    }

    deinit { stop() }

    /// Stops the server (by its PID) and removes its directory. Idempotent.
    public func stop() {
        process.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// What the server logged.
    public var log: String { (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? "" }

    /// A connection to the API with a bearer token, verifying the server with the test CA.
    public func connection(token: String = "test-token") -> ClusterConnection {
        ClusterConnection(
            server: api, tls: TLSConfig(certificateAuthority: .file(caPath)), credentials: .token(token), origin: "the test API server's token")
    }

    /// Writes a kubeconfig for the API (the test CA, a bearer token) to `path`.
    public func writeKubeconfig(to path: String, token: String = "test-token") throws {
        try """
            apiVersion: v1
            kind: Config
            clusters: [{name: test, cluster: {server: "\(api)", certificate-authority: "\(caPath)"}}]
            users: [{name: picket, user: {token: \(token)}}]
            contexts: [{name: test, context: {cluster: test, user: picket}}]
            current-context: test
            """.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Calls the control surface: POST (or GET without a body) of JSON; the JSON answer.
    @discardableResult
    public func control(_ path: String, _ body: Any? = nil) throws -> [String: Any] {
        let data = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        let request = HTTPRequest(method: body == nil ? "GET" : "POST", path: path, body: data.map { Array($0) }, timeout: .seconds(120))
        let response = try control.perform(request, credential: Credential())
        guard response.status == 200 else {
            throw TestServerError(description: "control \(path): \(response.status) \(String(decoding: response.body, as: UTF8.self))")
        }
        return (try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:]
    }

    /// Creates or updates objects (JSON values, in order); the last resourceVersion.
    @discardableResult
    public func apply(_ objects: [[String: Any]]) throws -> String {
        try control("/objects", ["items": objects])["resourceVersion"] as? String ?? ""
    }

    /// Creates or updates objects given as JSON bytes (a List or objects).
    @discardableResult
    public func apply(json: [UInt8]) throws -> String {
        let response = try control.perform(HTTPRequest(method: "POST", path: "/objects", body: json, timeout: .seconds(300)), credential: Credential())
        guard response.status == 200 else {
            throw TestServerError(description: "control /objects: \(response.status) \(String(decoding: response.body, as: UTF8.self))")
        }
        let answer = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        return answer?["resourceVersion"] as? String ?? ""
    }

    /// Deletes objects by kind, namespace and name; the last resourceVersion.
    @discardableResult
    public func delete(_ objects: [(kind: String, namespace: String?, name: String)]) throws -> String {
        let items: [[String: Any]] = objects.map { object in
            var item: [String: Any] = ["kind": object.kind, "name": object.name]
            if let namespace = object.namespace { item["namespace"] = namespace }
            return item
        }
        return try control("/delete", items)["resourceVersion"] as? String ?? ""
    }

    /// The server's counters (`lists`, `watches`, `openWatches`, `requests`, ...).
    public func stats() throws -> [String: Any] { try control("/stats") }

    /// A counter of `stats()` as an integer.
    public func counter(_ name: String) throws -> Int { (try stats()[name] as? Int) ?? -1 }
}

/// The test server could not be started or controlled.
public struct TestServerError: Error, CustomStringConvertible {
    /// Why.
    public var description: String
    public init(description: String) { self.description = description }
}

/// JSON for test objects.
public enum TestObjects {
    /// A Namespace.
    public static func namespace(_ name: String, labels: [String: String] = [:]) -> [String: Any] {
        ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": name, "labels": labels]]
    }

    /// A running Pod with one address.
    public static func pod(_ namespace: String, _ name: String, ip: String, node: String = "node-a", labels: [String: String] = [:]) -> [String: Any] {
        [
            "apiVersion": "v1", "kind": "Pod",
            "metadata": ["namespace": namespace, "name": name, "labels": labels],
            "spec": ["nodeName": node, "containers": [["name": "c", "image": "nginx", "ports": [["containerPort": 80, "protocol": "TCP"]]]]],
            "status": ["phase": "Running", "podIP": ip, "podIPs": [["ip": ip]]],
        ]
    }

    /// A NetworkPolicy selecting `app=selected` pods, denying all ingress.
    public static func denyIngress(_ namespace: String, _ name: String, app: String) -> [String: Any] {
        [
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": ["namespace": namespace, "name": name],
            "spec": ["podSelector": ["matchLabels": ["app": app]], "policyTypes": ["Ingress"]],
        ]
    }

    /// A Node with pod CIDRs.
    public static func node(_ name: String, podCIDRs: [String], address: String) -> [String: Any] {
        [
            "apiVersion": "v1", "kind": "Node", "metadata": ["name": name],
            "spec": ["podCIDR": podCIDRs.first ?? "", "podCIDRs": podCIDRs],
            "status": ["addresses": [["type": "InternalIP", "address": address]]],
        ]
    }
}
