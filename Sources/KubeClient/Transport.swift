import CCurl
import Foundation
import Synchronization

/// libcurl's process-wide initialisation, done once before any handle exists (it is not
/// thread-safe, so it must not race with the first transfer of another thread).
private let curlInitialised: Bool = {
    curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
}()

/// One HTTP request to the API server.
public struct HTTPRequest: Sendable {
    /// GET, POST, PUT, DELETE.
    public var method: String
    /// The path and query, appended to the server's URL (`/api/v1/pods?limit=500`).
    public var path: String
    /// Extra header lines (`Name: value`).
    public var headers: [String]
    /// The request body, for POST and PUT.
    public var body: [UInt8]?
    /// The whole transfer's deadline; nil for streams, which end by themselves or by `idleTimeout`.
    public var timeout: Duration?
    /// How long a transfer may go without receiving a byte before it is ended as hung.
    public var idleTimeout: Duration?

    /// Creates a request.
    public init(
        method: String = "GET", path: String, headers: [String] = [], body: [UInt8]? = nil, timeout: Duration? = .seconds(60),
        idleTimeout: Duration? = nil
    ) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.idleTimeout = idleTimeout
    }
}

/// A response: status, headers and (unless streamed) the body.
public struct HTTPResponse: Sendable {
    /// The HTTP status code.
    public var status: Int
    /// Header fields, names lower-cased, in order.
    public var headers: [(name: String, value: String)]
    /// The body; empty when it was handed to a stream consumer.
    public var body: [UInt8]

    /// The first value of a header, by lower-case name.
    public func header(_ name: String) -> String? {
        headers.first { $0.name == name }?.value
    }
}

/// Why a request got no HTTP response (or lost its stream): the transport's view. The API
/// client adds the server and the request to the message.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure, for retry decisions and metrics.
    public enum Kind: String, Sendable {
        /// Nothing listens at the address (ECONNREFUSED).
        case refused
        /// The connection or the transfer took longer than allowed.
        case timeout
        /// No byte arrived for longer than the request's idle timeout.
        case hung
        /// The server's certificate did not verify, or the TLS handshake failed.
        case tls
        /// The client certificate or key could not be used.
        case clientCertificate
        /// The host name did not resolve.
        case resolve
        /// The connection broke after it was made (reset, closed mid-response).
        case connectionLost
        /// The transfer was cancelled by the caller.
        case cancelled
        /// The consumer of a stream stopped it.
        case stopped
        /// Anything else libcurl reports.
        case other
    }

    /// The kind of failure.
    public var kind: Kind
    /// libcurl's own words, or ours.
    public var message: String

    public var description: String { message }
}

/// Cancels work in progress from another thread: a transfer's poll wakes at once
/// (curl_multi_wakeup) and it ends with `TransportError.Kind.cancelled`; a `sleep(for:)` on the
/// token returns early. Once cancelled, it stays cancelled.
public final class Cancellation: @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var cancelled = false
    private var multi: UnsafeMutableRawPointer?

    /// Creates a token that is not cancelled.
    public init() {}

    /// Whether `cancel()` was called.
    public var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    /// Cancels whatever uses this token, now or when it starts.
    public func cancel() {
        condition.lock()
        defer { condition.unlock() }
        cancelled = true
        if let multi { curl_multi_wakeup(multi) }
        condition.broadcast()
    }

    /// Waits for `duration` or until cancelled; false when cancelled.
    public func sleep(for duration: Duration) -> Bool {
        let deadline = Date(timeIntervalSinceNow: duration.seconds)
        condition.lock()
        defer { condition.unlock() }
        while !cancelled {
            if !condition.wait(until: deadline) { return !cancelled }
        }
        return false
    }

    /// Attaches a running transfer's multi handle (nil: detaches it); false when cancelled already.
    fileprivate func attach(_ handle: UnsafeMutableRawPointer?) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        multi = handle
        return !cancelled
    }
}

/// A value the compiler cannot prove Sendable (C handles), guarded by whoever holds it.
struct UnsafeSendable<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// A multi handle with its one easy handle: the multi owns the connection cache, so keeping the
/// pair keeps TLS connections alive between requests.
private final class CurlPair {
    let easy: UnsafeMutableRawPointer
    let multi: UnsafeMutableRawPointer
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    init?() {
        guard curlInitialised, let easy = curl_easy_init() else { return nil }
        guard let multi = curl_multi_init() else {
            curl_easy_cleanup(easy)
            return nil
        }
        self.easy = easy
        self.multi = multi
    }

    deinit {
        curl_easy_cleanup(easy)
        curl_multi_cleanup(multi)
        errorBuffer.deallocate()
    }
}

/// What the C callbacks of one transfer write into (passed as their user-data pointer).
private final class TransferState {
    var headers: [(name: String, value: String)] = []
    var body: [UInt8] = []
    /// The stream consumer: gets each piece as it arrives; false stops the transfer.
    var consumer: ((UnsafeRawBufferPointer) -> Bool)?
    var stoppedByConsumer = false
    var lastByte = ContinuousClock.now
}

/// HTTP over libcurl to one API server, with the connection's TLS settings. Requests run on the
/// calling thread and block it (run them on threads of their own, never on the Swift concurrency
/// pool). Safe to use from many threads at once: each transfer takes its own handle from a
/// pool, and returns it with its live connection for the next request.
public final class Transport: Sendable {
    /// The connection's server, TLS configuration and where it came from.
    public let connection: ClusterConnection
    /// The User-Agent header.
    public let userAgent: String
    /// How long connecting may take.
    public let connectTimeout: Duration
    private let pool = Mutex<UnsafeSendable<[CurlPair]>>(UnsafeSendable([]))
    /// Material of the TLS configuration read once (file contents are left to libcurl).
    private let serverURL: (base: String, connectTo: String?)

    /// Creates a transport for `connection`.
    public init(connection: ClusterConnection, userAgent: String = "picket", connectTimeout: Duration = .seconds(10)) {
        self.connection = connection
        self.userAgent = userAgent
        self.connectTimeout = connectTimeout
        serverURL = Transport.rewrite(server: connection.server, serverName: connection.tls.serverName)
    }

    /// With `tls-server-name`, the URL names that host (so that SNI and verification use it) and
    /// CONNECT_TO sends the connection to the real address.
    private static func rewrite(server: String, serverName: String?) -> (base: String, connectTo: String?) {
        guard let serverName, var parts = URLComponents(string: server), let host = parts.host else { return (server, nil) }
        let port = parts.port ?? (parts.scheme == "http" ? 80 : 443)
        parts.host = serverName
        let realHost = host.contains(":") ? "[\(host)]" : host
        return (parts.string ?? server, "\(serverName):\(port):\(realHost):\(port)")
    }

    /// Performs `request` with `credential`. With `stream`, the body is handed over as it
    /// arrives (the response's `body` stays empty) and the call returns when the server ends the
    /// response, the consumer returns false (`stopped`), `cancellation` fires, or no byte arrives
    /// for `request.idleTimeout` (`hung`). Non-2xx responses are responses, not errors.
    public func perform(
        _ request: HTTPRequest, credential: Credential, cancellation: Cancellation? = nil,
        stream: ((UnsafeRawBufferPointer) -> Bool)? = nil
    ) throws(TransportError) -> HTTPResponse {
        guard let pair = takePair() else { throw TransportError(kind: .other, message: "libcurl could not be initialised") }
        var reusable = true
        defer { if reusable { givePair(pair) } }
        let state = TransferState()
        state.consumer = stream
        var lists: [UnsafeMutablePointer<curl_slist>] = []
        defer { for list in lists { curl_slist_free_all(list) } }

        let easy = pair.easy
        curl_easy_reset(easy)
        pair.errorBuffer[0] = 0
        let url = serverURL.base + request.path
        var setup: [CURLcode] = [
            picket_curl_set_string(easy, CURLOPT_URL, url),
            picket_curl_set_long(easy, CURLOPT_NOSIGNAL, 1),
            picket_curl_set_pointer(easy, CURLOPT_ERRORBUFFER, pair.errorBuffer),
            picket_curl_set_string(easy, CURLOPT_USERAGENT, userAgent),
            picket_curl_set_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(connectTimeout.milliseconds)),
            picket_curl_set_long(easy, CURLOPT_TCP_KEEPALIVE, 1),
            picket_curl_set_long(easy, CURLOPT_TCP_KEEPIDLE, 30),
            picket_curl_set_long(easy, CURLOPT_TCP_KEEPINTVL, 10),
            picket_curl_set_long(easy, CURLOPT_FOLLOWLOCATION, 0),
            picket_curl_set_string(easy, CURLOPT_CUSTOMREQUEST, request.method),
        ]
        if let timeout = request.timeout {
            setup.append(picket_curl_set_long(easy, CURLOPT_TIMEOUT_MS, Int(timeout.milliseconds)))
        }
        if request.method == "HEAD" { setup.append(picket_curl_set_long(easy, CURLOPT_NOBODY, 1)) }
        if let body = request.body {
            setup.append(picket_curl_set_long(easy, CURLOPT_POSTFIELDSIZE_LARGE, body.count))
            // Copied by libcurl (COPYPOSTFIELDS, after the size): the array may move.
            setup.append(body.withUnsafeBytes { picket_curl_set_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)) })
        }
        setup += tlsOptions(easy, credential: credential)

        var headerLines = ["Accept: application/json"] + request.headers
        if request.body != nil { headerLines.append("Content-Type: application/json") }
        if let authorization = credential.authorization { headerLines.append("Authorization: \(authorization)") }
        if let list = slist(headerLines) {
            lists.append(list)
            setup.append(picket_curl_set_slist(easy, CURLOPT_HTTPHEADER, list))
        }
        if let connectTo = serverURL.connectTo, let list = slist([connectTo]) {
            lists.append(list)
            setup.append(picket_curl_set_slist(easy, CURLOPT_CONNECT_TO, list))
        }
        let user = Unmanaged.passUnretained(state).toOpaque()
        setup += [
            picket_curl_set_data_callback(easy, CURLOPT_WRITEFUNCTION, writeCallback),
            picket_curl_set_pointer(easy, CURLOPT_WRITEDATA, user),
            picket_curl_set_data_callback(easy, CURLOPT_HEADERFUNCTION, headerCallback),
            picket_curl_set_pointer(easy, CURLOPT_HEADERDATA, user),
        ]
        if let failed = setup.first(where: { $0 != CURLE_OK }) {
            throw TransportError(kind: .other, message: "libcurl refused an option: \(String(cString: curl_easy_strerror(failed)))")
        }

        let code: CURLcode
        do {
            code = try withExtendedLifetime(state) { () throws(TransportError) -> CURLcode in
                try run(pair, state: state, idleTimeout: request.idleTimeout, cancellation: cancellation)
            }
        } catch {
            reusable = false  // halted mid-transfer
            throw error
        }
        if code != CURLE_OK {
            // A broken or abandoned transfer may leave its connection in any state: start afresh.
            reusable = false
            if code == CURLE_WRITE_ERROR && state.stoppedByConsumer {
                throw TransportError(kind: .stopped, message: "the stream's consumer stopped it")
            }
            throw error(code, pair: pair)
        }
        var status = 0
        _ = picket_curl_get_long(easy, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: state.headers, body: state.body)
    }

    /// Runs the transfer in the pair's multi handle until it ends, polling so that a
    /// cancellation or an idle deadline ends it at once.
    private func run(_ pair: CurlPair, state: TransferState, idleTimeout: Duration?, cancellation: Cancellation?) throws(TransportError) -> CURLcode {
        let multi = pair.multi
        guard curl_multi_add_handle(multi, pair.easy) == CURLM_OK else {
            throw TransportError(kind: .other, message: "libcurl could not start the transfer")
        }
        defer { curl_multi_remove_handle(multi, pair.easy) }
        if let cancellation, !cancellation.attach(multi) {
            throw TransportError(kind: .cancelled, message: "cancelled")
        }
        defer { _ = cancellation?.attach(nil) }
        state.lastByte = .now
        while true {
            var running: Int32 = 0
            let performed = curl_multi_perform(multi, &running)
            guard performed == CURLM_OK else {
                throw TransportError(kind: .other, message: "libcurl: \(String(cString: curl_multi_strerror(performed)))")
            }
            if running == 0 { break }
            if cancellation?.isCancelled == true { throw TransportError(kind: .cancelled, message: "cancelled") }
            if let idleTimeout, ContinuousClock.now - state.lastByte > idleTimeout {
                throw TransportError(kind: .hung, message: "no data for \(idleTimeout.seconds) s: the connection is hung")
            }
            var ready: Int32 = 0
            _ = curl_multi_poll(multi, nil, 0, 250, &ready)
        }
        var left: Int32 = 0
        while let message = curl_multi_info_read(multi, &left) {
            if message.pointee.msg == CURLMSG_DONE {
                return message.pointee.data.result
            }
        }
        return CURLE_OK
    }

    /// The TLS options of the connection, with an exec plugin's certificate if it gave one.
    private func tlsOptions(_ easy: UnsafeMutableRawPointer, credential: Credential) -> [CURLcode] {
        let tls = connection.tls
        var codes: [CURLcode] = []
        func material(_ value: TLSMaterial?, file: CURLoption, blob: CURLoption) {
            switch value {
            case .file(let path): codes.append(picket_curl_set_string(easy, file, path))
            case .data(let bytes): codes.append(bytes.withUnsafeBytes { picket_curl_set_blob(easy, blob, $0.baseAddress, $0.count) })
            case nil: break
            }
        }
        if tls.insecureSkipVerify {
            codes.append(picket_curl_set_long(easy, CURLOPT_SSL_VERIFYPEER, 0))
            codes.append(picket_curl_set_long(easy, CURLOPT_SSL_VERIFYHOST, 0))
        } else {
            material(tls.certificateAuthority, file: CURLOPT_CAINFO, blob: CURLOPT_CAINFO_BLOB)
        }
        if let certificate = credential.clientCertificate, let key = credential.clientKey {
            material(.data(certificate), file: CURLOPT_SSLCERT, blob: CURLOPT_SSLCERT_BLOB)
            material(.data(key), file: CURLOPT_SSLKEY, blob: CURLOPT_SSLKEY_BLOB)
        } else {
            material(tls.clientCertificate, file: CURLOPT_SSLCERT, blob: CURLOPT_SSLCERT_BLOB)
            material(tls.clientKey, file: CURLOPT_SSLKEY, blob: CURLOPT_SSLKEY_BLOB)
        }
        return codes
    }

    /// A transport error for a failed transfer, in libcurl's words where it has them.
    private func error(_ code: CURLcode, pair: CurlPair) -> TransportError {
        let detail = pair.errorBuffer[0] != 0 ? String(cString: pair.errorBuffer) : String(cString: curl_easy_strerror(code))
        let kind: TransportError.Kind
        switch code {
        case CURLE_COULDNT_CONNECT:
            var osErrno = 0
            _ = picket_curl_get_long(pair.easy, CURLINFO_OS_ERRNO, &osErrno)
            kind = osErrno == Int(ECONNREFUSED) ? .refused : .other
            if kind == .refused { return TransportError(kind: .refused, message: "connection refused (\(detail))") }
        case CURLE_OPERATION_TIMEDOUT: kind = .timeout
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR,
            CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CRL_BADFILE:
            kind = .tls
            return TransportError(kind: .tls, message: "TLS verification failed: \(detail)")
        case CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_ENGINE_NOTFOUND:
            kind = .clientCertificate
            return TransportError(kind: .clientCertificate, message: "the client certificate cannot be used: \(detail)")
        case CURLE_COULDNT_RESOLVE_HOST: kind = .resolve
        case CURLE_GOT_NOTHING, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            kind = .connectionLost
            return TransportError(kind: .connectionLost, message: "the connection was lost: \(detail)")
        default: kind = .other
        }
        return TransportError(kind: kind, message: detail)
    }

    /// A curl_slist of `lines`; nil when libcurl could not allocate it.
    private func slist(_ lines: [String]) -> UnsafeMutablePointer<curl_slist>? {
        var list: UnsafeMutablePointer<curl_slist>?
        for line in lines {
            guard let next = curl_slist_append(list, line) else {
                if let list { curl_slist_free_all(list) }
                return nil
            }
            list = next
        }
        return list
    }

    private func takePair() -> CurlPair? {
        if let pair = pool.withLock({ $0.value.popLast() }) { return pair }
        return CurlPair()
    }

    private func givePair(_ pair: CurlPair) {
        pool.withLock { pool in
            if pool.value.count < 8 { pool.value.append(pair) }
        }
    }
}

/// CURLOPT_WRITEFUNCTION: body bytes, appended or handed to the stream consumer.
private func writeCallback(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?) -> Int {
    guard let user else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(user).takeUnretainedValue()
    let length = size * count
    state.lastByte = .now
    guard length > 0, let data else { return length }
    let bytes = UnsafeRawBufferPointer(start: data, count: length)
    if let consumer = state.consumer {
        if !consumer(bytes) {
            state.stoppedByConsumer = true
            return 0
        }
    } else {
        state.body.append(contentsOf: bytes)
    }
    return length
}

/// CURLOPT_HEADERFUNCTION: one header line at a time; a new status line starts a new set (after
/// a 100 Continue or a redirect).
private func headerCallback(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?) -> Int {
    guard let user else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(user).takeUnretainedValue()
    let length = size * count
    guard let data else { return length }
    state.lastByte = .now
    let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    if line.hasPrefix("HTTP/") {
        state.headers.removeAll()
    } else if let colon = line.firstIndex(of: ":") {
        let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
        state.headers.append((name, value))
    }
    return length
}

extension Duration {
    /// Whole milliseconds, rounded down.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Seconds as a decimal number.
    var seconds: Double { Double(milliseconds) / 1000 }
}
