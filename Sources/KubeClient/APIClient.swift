import Foundation
import KubeModel

/// A collection Picket reads: the three that decide enforcement, and one Node by name (the
/// daemon's own, for its pod CIDRs).
public enum APIResource: Sendable, Hashable, CustomStringConvertible {
    case namespaces
    case pods
    case networkPolicies
    /// One node, by name (listed and watched through a field selector).
    case node(String)

    /// The collection's path, all namespaces.
    public var path: String {
        switch self {
        case .namespaces: "/api/v1/namespaces"
        case .pods: "/api/v1/pods"
        case .networkPolicies: "/apis/networking.k8s.io/v1/networkpolicies"
        case .node: "/api/v1/nodes"
        }
    }

    /// Query items every list and watch of this resource carries.
    var selection: [(String, String)] {
        switch self {
        case .node(let name): [("fieldSelector", "metadata.name=\(name)")]
        default: []
        }
    }

    /// The plural name, as the API and RBAC call it.
    public var description: String {
        switch self {
        case .namespaces: "namespaces"
        case .pods: "pods"
        case .networkPolicies: "networkpolicies"
        case .node(let name): "node \(name)"
        }
    }
}

/// Why an API request failed, naming the server, the request and the reason.
public struct APIError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure.
    public enum Kind: Sendable, Equatable {
        /// No HTTP response: refused, timed out, TLS, hung, lost, cancelled.
        case transport(TransportError.Kind)
        /// The server answered with this non-2xx status (its Status body in `status`).
        case http(Int)
        /// The credentials could not be obtained (token file, exec plugin).
        case credentials
        /// The response did not decode.
        case decode
    }

    /// The server's URL.
    public var server: String
    /// `GET /api/v1/pods?limit=500`.
    public var request: String
    /// What kind of failure.
    public var kind: Kind
    /// The server's Status body, when it sent one.
    public var status: APIStatus?
    /// The server's Retry-After, when it sent one.
    public var retryAfter: Duration?
    /// The reason, in the server's or libcurl's words.
    public var message: String

    public var description: String { "\(server): \(request): \(message)" }

    /// The HTTP status code, if the server answered.
    public var code: Int? {
        if case .http(let code) = kind { return code }
        return status?.code
    }

    /// Whether the same request may succeed later: throttling, server errors, and transport
    /// failures other than TLS and a client certificate that cannot be used.
    public var isTransient: Bool {
        switch kind {
        case .http(let code): code == 429 || code >= 500
        case .transport(let kind): ![.tls, .clientCertificate, .cancelled, .stopped].contains(kind)
        case .credentials: true
        case .decode: false
        }
    }

    /// Whether it failed because its cancellation fired.
    public var isCancelled: Bool { kind == .transport(.cancelled) }
}

/// How long to wait before trying again: exponential from `initial`, capped at `cap`, with
/// jitter (a random point in the upper half of the step, so that many nodes retrying at once
/// spread out), and the server's Retry-After when it gives one (also capped).
public struct Backoff: Sendable {
    /// The first step.
    public var initial: Duration
    /// The largest wait.
    public var cap: Duration
    /// Failures since the last success.
    public private(set) var failures = 0

    /// Creates a backoff.
    public init(initial: Duration = .milliseconds(200), cap: Duration = .seconds(30)) {
        self.initial = initial
        self.cap = cap
    }

    /// The wait before the next attempt, counting one more failure.
    public mutating func next(retryAfter: Duration? = nil, using random: inout some RandomNumberGenerator) -> Duration {
        failures += 1
        if let retryAfter { return min(max(retryAfter, .zero), cap) }
        let shift = min(failures - 1, 30)
        let step = min(initial * (1 << shift), cap)
        let half = step / 2
        // 53 random bits as a fraction from 0 to 1, both ends included.
        let jitter = Double(random.next() >> 11) / Double((UInt64(1) << 53) - 1)
        return half + half * jitter
    }

    /// The wait before the next attempt, with the system's random numbers.
    public mutating func next(retryAfter: Duration? = nil) -> Duration {
        var random = SystemRandomNumberGenerator()
        return next(retryAfter: retryAfter, using: &random)
    }

    /// A success: the next failure starts from `initial` again.
    public mutating func reset() { failures = 0 }
}

/// How a watch stream ended without an error.
public enum WatchEnd: Sendable, Equatable {
    /// The server ended the response (its timeoutSeconds, or a clean close).
    case closedByServer
    /// The event handler asked to stop.
    case stoppedByHandler
}

/// The Kubernetes API over one `Transport`: requests with credentials, Status bodies as errors,
/// a refreshed credential after a 401, retries of transient failures, paginated lists and watch
/// streams decoded on the fast JSON path. Blocking; call it from threads of your own.
public final class APIClient: Sendable {
    /// The transport (server, TLS).
    public let transport: Transport
    /// What requests present.
    public let credentials: Credentials
    /// How many times a one-shot request (`get`, `list`) is tried in all, for transient failures.
    public let attempts: Int

    /// Creates a client for `connection`.
    public init(connection: ClusterConnection, userAgent: String = "picket", attempts: Int = 5) {
        transport = Transport(connection: connection, userAgent: userAgent)
        credentials = Credentials(connection)
        self.attempts = max(1, attempts)
    }

    /// The server's URL.
    public var server: String { transport.connection.server }

    // MARK: one request

    /// Sends `request` once (again once after a 401, with the credential refreshed: a rotated
    /// token, an expired exec credential). A non-2xx answer is an error carrying its Status.
    public func send(
        _ request: HTTPRequest, cancellation: Cancellation? = nil, stream: ((UnsafeRawBufferPointer) -> Bool)? = nil
    ) throws(APIError) -> HTTPResponse {
        var refreshed = false
        while true {
            let credential: Credential
            do {
                credential = try credentials.current()
            } catch {
                throw APIError(server: server, request: describe(request), kind: .credentials, message: "no credentials: \(error)")
            }
            let response: HTTPResponse
            do {
                response = try transport.perform(request, credential: credential, cancellation: cancellation, stream: stream)
            } catch {
                throw APIError(server: server, request: describe(request), kind: .transport(error.kind), message: error.message)
            }
            if response.status == 401 && !refreshed {
                credentials.invalidate(ifCurrent: credential)
                refreshed = true
                continue
            }
            guard (200..<300).contains(response.status) else { throw failure(response, request: request) }
            return response
        }
    }

    /// Sends `request`, trying again after transient failures (429 and 5xx honouring
    /// Retry-After, refused and lost connections, timeouts) with backoff, `attempts` times in all.
    public func perform(_ request: HTTPRequest, cancellation: Cancellation? = nil) throws(APIError) -> HTTPResponse {
        var backoff = Backoff()
        var attempt = 1
        while true {
            do {
                return try send(request, cancellation: cancellation)
            } catch {
                guard error.isTransient, attempt < attempts else { throw error }
                attempt += 1
                let wait = backoff.next(retryAfter: error.retryAfter)
                if let cancellation {
                    guard cancellation.sleep(for: wait) else { throw error }
                } else {
                    Thread.sleep(forTimeInterval: wait.seconds)
                }
            }
        }
    }

    /// An error for a non-2xx response: the Status message when the body is a Status.
    private func failure(_ response: HTTPResponse, request: HTTPRequest) -> APIError {
        let status = response.body.withUnsafeBytes { APIDecoder.decodeStatus($0) }
        let reason = reasonPhrase(response.status)
        var message = "\(response.status) \(reason)"
        if let status, !status.message.isEmpty {
            message += ": \(status.message)"
        } else if !response.body.isEmpty {
            message += ": " + String(decoding: response.body.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if response.status == 401 { message += " (the credentials of \(transport.connection.origin) were refused)" }
        let retryAfter = response.header("retry-after").flatMap(Int.init).map { Duration.seconds($0) }
        return APIError(
            server: server, request: describe(request), kind: .http(response.status), status: status, retryAfter: retryAfter, message: message)
    }

    private func describe(_ request: HTTPRequest) -> String { "\(request.method) \(request.path)" }

    /// The reason phrase of the statuses the API uses (RFC 9110).
    private func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 409: "Conflict"
        case 410: "Gone"
        case 413: "Payload Too Large"
        case 415: "Unsupported Media Type"
        case 422: "Unprocessable Entity"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "HTTP \(status)"
        }
    }

    // MARK: lists and watches

    /// One page of a list of `resource`.
    public func listPage(
        _ resource: APIResource, limit: Int, continue token: String? = nil, cancellation: Cancellation? = nil
    ) throws(APIError) -> ListPage {
        var items = resource.selection
        items.append(("limit", String(limit)))
        if let token { items.append(("continue", token)) }
        let request = HTTPRequest(path: resource.path + query(items), timeout: .seconds(120))
        let response = try perform(request, cancellation: cancellation)
        do {
            return try response.body.withUnsafeBytes { bytes throws(APIDecodeError) in try APIDecoder.decodeList(bytes, source: server) }
        } catch {
            throw APIError(server: server, request: describe(request), kind: .decode, message: "the response does not decode: \(error)")
        }
    }

    /// The whole collection, page by page, consistent at one resourceVersion. A continue token
    /// that expired (410) starts the list again from the first page, at most three times.
    public func list(_ resource: APIResource, pageSize: Int = 500, cancellation: Cancellation? = nil) throws(APIError) -> ListPage {
        var restarts = 0
        while true {
            var whole: ListPage?
            var token: String?
            do {
                repeat {
                    let page = try listPage(resource, limit: pageSize, continue: token, cancellation: cancellation)
                    if whole == nil {
                        whole = page
                    } else {
                        whole!.items += page.items
                        whole!.issues += page.issues
                    }
                    token = page.continueToken.flatMap { $0.isEmpty ? nil : $0 }
                } while token != nil
                whole!.continueToken = nil
                whole!.remainingItemCount = nil
                return whole!
            } catch {
                guard error.code == 410, token != nil, restarts < 3 else { throw error }
                restarts += 1
            }
        }
    }

    /// Watches `resource` from `resourceVersion` (with bookmarks), handing each event to
    /// `handler` in order as it arrives; the handler returns false to stop. Returns when the
    /// server ends the stream (after `timeoutSeconds`) or the handler stops; throws when the
    /// stream cannot start (an HTTP 410 among them), breaks, or sends nothing for `idleTimeout`.
    /// An event that does not decode ends the stream with a decode error.
    public func watch(
        _ resource: APIResource, from resourceVersion: String, timeoutSeconds: Int, idleTimeout: Duration,
        cancellation: Cancellation? = nil, handler: (WatchEvent) -> Bool
    ) throws(APIError) -> WatchEnd {
        var items = resource.selection
        items += [("watch", "true"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", String(timeoutSeconds))]
        if !resourceVersion.isEmpty { items.append(("resourceVersion", resourceVersion)) }
        let request = HTTPRequest(path: resource.path + query(items), timeout: nil, idleTimeout: idleTimeout)
        var lines = LineSplitter()
        var decodeFailure: APIDecodeError?
        var stopped = false
        let source = server
        do throws(APIError) {
            _ = try withoutActuallyEscaping(handler) { handler throws(APIError) -> HTTPResponse in
                try send(request, cancellation: cancellation) { chunk in
                    lines.append(chunk) { line in
                        guard !stopped, decodeFailure == nil else { return false }
                        do throws(APIDecodeError) {
                            let event = try APIDecoder.decodeWatchEvent(line, source: source)
                            if !handler(event) { stopped = true }
                        } catch {
                            decodeFailure = error
                        }
                        return !stopped && decodeFailure == nil
                    }
                }
            }
        } catch {
            if error.kind == .transport(.stopped) {
                if let decodeFailure {
                    throw APIError(server: server, request: describe(request), kind: .decode, message: "a watch event does not decode: \(decodeFailure)")
                }
                return .stoppedByHandler
            }
            throw error
        }
        return .closedByServer
    }

    /// `?a=b&c=d`, each value percent-encoded (only unreserved characters stay as they are).
    func query(_ items: [(String, String)]) -> String {
        guard !items.isEmpty else { return "" }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return "?" + items.map { name, value in
            "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value)"
        }.joined(separator: "&")
    }
}

/// Splits a byte stream into lines (a watch stream's events), keeping a partial line until its
/// end arrives.
struct LineSplitter {
    private var pending: [UInt8] = []

    /// Feeds `chunk`; `line` gets each complete line (without its newline) and returns false to
    /// stop. Returns false when a line stopped it.
    mutating func append(_ chunk: UnsafeRawBufferPointer, line: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        var start = 0
        for i in 0..<chunk.count where chunk[i] == 0x0A {
            let keepGoing: Bool
            if pending.isEmpty {
                keepGoing = emit(UnsafeRawBufferPointer(rebasing: chunk[start..<i]), line)
            } else {
                pending.append(contentsOf: chunk[start..<i])
                keepGoing = pending.withUnsafeBytes { emit($0, line) }
                pending.removeAll(keepingCapacity: true)
            }
            start = i + 1
            if !keepGoing { return false }
        }
        if start < chunk.count { pending.append(contentsOf: chunk[start...]) }
        return true
    }

    /// Hands over a line unless it is blank.
    private func emit(_ bytes: UnsafeRawBufferPointer, _ line: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        guard bytes.contains(where: { $0 != 0x20 && $0 != 0x0D && $0 != 0x09 }) else { return true }
        return line(bytes)
    }
}
