import Foundation
import KubeClient
import KubeModel
import KubeTestSupport
import Testing

/// Lists pods with `connection`; the error, if any.
private func listError(_ connection: ClusterConnection, attempts: Int = 1) -> APIError? {
    do {
        _ = try APIClient(connection: connection, attempts: attempts).list(.pods)
        return nil
    } catch {
        return error
    }
}

@Suite(.serialized, .enabled(if: hasTestServerTools)) struct APIClientTests {
    @Test func unauthorizedAndForbiddenNameTheServerAndTheAPIsMessage() throws {
        let server = try TestAPIServer(tokens: ["good": "alice", "nosy": "bob"], forbidden: ["bob"])
        defer { server.stop() }
        let unknown = try #require(listError(server.connection(token: "wrong")))
        #expect(unknown.code == 401)
        #expect(unknown.description.hasPrefix("\(server.api): GET /api/v1/pods?limit=500: 401 Unauthorized: Unauthorized"))
        let forbidden = try #require(listError(server.connection(token: "nosy")))
        #expect(forbidden.code == 403)
        #expect(forbidden.description.contains(
            "403 Forbidden: pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" at the cluster scope"))
        #expect(!forbidden.isTransient)
        #expect(listError(server.connection(token: "good")) == nil)
    }

    @Test func aClientCertificateAloneAuthenticates() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        let connection = ClusterConnection(
            server: server.api,
            tls: TLSConfig(certificateAuthority: .file(server.caPath), clientCertificate: .file(server.clientCertificatePath), clientKey: .file(server.clientKeyPath)),
            origin: "client certificate")
        #expect(listError(connection) == nil)
        let bytes = ClusterConnection(
            server: server.api,
            tls: TLSConfig(
                certificateAuthority: .data(Array(try Data(contentsOf: URL(fileURLWithPath: server.caPath)))),
                clientCertificate: .data(Array(try Data(contentsOf: URL(fileURLWithPath: server.clientCertificatePath)))),
                clientKey: .data(Array(try Data(contentsOf: URL(fileURLWithPath: server.clientKeyPath))))),
            origin: "client certificate data")
        #expect(listError(bytes) == nil)
        let stats = try server.stats()
        #expect((stats["byUser"] as? [String: Any])?["picket-client"] != nil)
    }

    @Test func aServerCertificateOfAnotherCAFailsVerificationUnlessSkipped() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        var connection = server.connection()
        connection.tls.certificateAuthority = .file(server.otherCAPath)
        let error = try #require(listError(connection, attempts: 3))
        #expect(error.kind == .transport(.tls))
        #expect(error.description.hasPrefix("\(server.api): GET /api/v1/pods?limit=500: TLS verification failed: "))
        connection.tls.insecureSkipVerify = true
        #expect(listError(connection) == nil)
    }

    @Test func aRefusedConnectionNamesTheServer() throws {
        let server = try TestAPIServer()
        let connection = server.connection()
        server.stop()
        let error = try #require(listError(connection))
        #expect(error.kind == .transport(.refused))
        #expect(error.description.hasPrefix("\(server.api): GET /api/v1/pods?limit=500: connection refused"))
        #expect(error.isTransient)
    }

    @Test func throttlingAndServerErrorsAreRetriedHonouringRetryAfter() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([TestObjects.namespace("shop"), TestObjects.pod("shop", "a", ip: "10.0.0.1")])
        try server.control("/throttle", ["count": 2, "retryAfterSeconds": 1, "code": 429])
        let before = try server.counter("requests")
        let page = try APIClient(connection: server.connection()).list(.pods)
        #expect(page.items.count == 1)
        #expect(try server.counter("requests") - before == 3)
        try server.control("/throttle", ["count": 2, "retryAfterSeconds": NSNull(), "code": 503])
        #expect(try APIClient(connection: server.connection()).list(.pods).items.count == 1)
        // Past the attempts, the last answer is the error.
        try server.control("/throttle", ["count": 5, "retryAfterSeconds": 0, "code": 429])
        let error = try #require(listError(server.connection(), attempts: 2))
        #expect(error.code == 429)
        #expect(error.retryAfter == .zero)
        try server.control("/throttle", ["count": 0, "retryAfterSeconds": 0, "code": 429])
    }

    @Test func anExpiredContinueTokenIsA410AndAListStartsAgain() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([TestObjects.namespace("shop")] + (0..<30).map { TestObjects.pod("shop", "p\($0)", ip: "10.0.1.\($0)") })
        let client = APIClient(connection: server.connection())
        let first = try client.listPage(.pods, limit: 10)
        let token = try #require(first.continueToken)
        try server.apply([TestObjects.pod("shop", "late", ip: "10.0.2.1")])
        try server.control("/compact", [:])
        do {
            _ = try client.listPage(.pods, limit: 10, continue: token)
            Issue.record("an expired token was accepted")
        } catch {
            #expect(error.code == 410)
            #expect(error.status?.reason == "Expired")
            #expect(error.description.contains("410 Gone: The provided continue parameter is too old"))
        }
        // A whole list whose token expires between pages lists again from the start.
        try server.control("/latency", ["milliseconds": 300])
        let lists = try server.counter("lists")
        let result = ListOutcome()
        let thread = Thread {
            do throws(APIError) {
                result.set(.success(try client.list(.pods, pageSize: 5)))
            } catch {
                result.set(.failure(error))
            }
        }
        thread.start()
        let deadline = ContinuousClock.now + .seconds(30)
        while try server.counter("lists") < lists + 1 && ContinuousClock.now < deadline { usleep(5_000) }
        try server.apply([TestObjects.pod("shop", "later", ip: "10.0.2.2")])
        try server.control("/compact", [:])
        let outcome = try #require(result.wait(timeout: .seconds(60)))
        let page = try outcome.get()
        #expect(page.items.count == 32)
        #expect(try server.counter("lists") >= lists + 7 + 1)  // the first pages, then 7 pages again
    }

    @Test func aRotatedTokenFileIsReadAgainAfterA401() throws {
        let server = try TestAPIServer(tokens: ["first": "picket"])
        defer { server.stop() }
        let file = server.directory + "/token"
        try "first\n".write(toFile: file, atomically: true, encoding: .utf8)
        var connection = server.connection()
        connection.credentials = .tokenFile(file)
        let client = APIClient(connection: connection, attempts: 1)
        #expect(try client.list(.pods).items.isEmpty)
        try server.control("/tokens", ["tokens": ["second": "picket"], "forbidden": [String]()])
        try "second\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try client.list(.pods).items.isEmpty)
    }

    @Test func anExecPluginsTokenIsUsedAndCached() throws {
        let server = try TestAPIServer(tokens: ["from-plugin": "exec-user"])
        defer { server.stop() }
        let plugin = server.directory + "/plugin.sh"
        let runs = server.directory + "/runs"
        try """
            #!/bin/sh
            echo run >> "\(runs)"
            printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$PICKET_TEST_TOKEN"
            """.write(toFile: plugin, atomically: true, encoding: .utf8)
        chmod(plugin, 0o755)
        var connection = server.connection()
        connection.credentials = .exec(ExecConfig(
            apiVersion: "client.authentication.k8s.io/v1", command: plugin, env: [.init(name: "PICKET_TEST_TOKEN", value: "from-plugin")],
            interactiveMode: "Never"))
        let client = APIClient(connection: connection, attempts: 1)
        #expect(try client.list(.pods).items.isEmpty)
        #expect(try client.list(.namespaces).items.isEmpty)
        let count = try String(contentsOfFile: runs, encoding: .utf8).split(separator: "\n").count
        #expect(count == 1)
        let stats = try server.stats()
        #expect((stats["byUser"] as? [String: Any])?["exec-user"] != nil)
    }

    @Test func latencyBeyondTheRequestDeadlineIsATimeout() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.control("/latency", ["milliseconds": 1500])
        let client = APIClient(connection: server.connection(), attempts: 1)
        do {
            _ = try client.send(HTTPRequest(path: "/api/v1/pods", timeout: .milliseconds(500)))
            Issue.record("no timeout")
        } catch {
            #expect(error.kind == .transport(.timeout))
            #expect(error.description.hasPrefix("\(server.api): GET /api/v1/pods: "))
        }
        try server.control("/latency", ["milliseconds": 0])
    }
}

/// The outcome of a list run on another thread.
private final class ListOutcome: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Result<ListPage, APIError>?

    func set(_ result: Result<ListPage, APIError>) {
        condition.lock()
        value = result
        condition.broadcast()
        condition.unlock()
    }

    func wait(timeout: Duration) -> Result<ListPage, APIError>? {
        let deadline = Date(timeIntervalSinceNow: Double(timeout.components.seconds))
        condition.lock()
        defer { condition.unlock() }
        while value == nil && condition.wait(until: deadline) {}
        return value
    }
}
