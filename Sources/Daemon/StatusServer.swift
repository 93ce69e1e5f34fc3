#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// A response of the status server.
public struct StatusResponse: Sendable {
    /// The HTTP status code.
    public var status: Int
    /// The Content-Type.
    public var contentType: String
    /// The body.
    public var body: String

    /// Creates a response.
    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// A minimal HTTP/1.1 server for `/healthz` and `/metrics`: one thread accepting, one short
/// request per connection (`Connection: close`), GET and HEAD only, bounded request size and
/// read time, so that a slow or hostile client cannot hold it. Routes are closures, answered on
/// the accepting thread; keep them fast.
public final class StatusServer: Sendable {
    /// The port it listens on (the one asked for, or the one the kernel chose for 0).
    public let port: Int
    private let socket: Int32
    private let routes: [String: @Sendable () -> StatusResponse]
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Listens on `address:port` (all addresses by default, as a node's kubelet probes the host
    /// network); throws the reason when it cannot bind.
    public init(address: String = "0.0.0.0", port: Int, routes: [String: @Sendable () -> StatusResponse]) throws(StatusServerError) {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StatusServerError(description: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, address, &addr.sin_addr) == 1 else {
            close(fd)
            throw StatusServerError(description: "\(address) is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw StatusServerError(description: "cannot listen on \(address):\(port): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        socket = fd
        self.routes = routes
    }

    /// Starts answering on a thread of its own.
    public func start() {
        let thread = Thread { [self] in
            serve()
            finished.signal()
        }
        thread.name = "status server"
        thread.start()
    }

    /// Stops listening and waits for the thread (at most 2 s).
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(socket, Int32(SHUT_RDWR))
        _ = finished.wait(timeout: .now() + 2)
        close(socket)
    }

    private func serve() {
        while !stopped.load(ordering: .relaxed) {
            var pollEntry = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pollEntry, 1, 500)
            if ready <= 0 { continue }
            let client = accept(socket, nil, nil)
            if client < 0 { continue }
            answer(client)
            close(client)
        }
    }

    /// Reads one request (at most 8 KiB, for at most 2 s) and writes its answer.
    private func answer(_ client: Int32) {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192 {
            let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            request += buffer[0..<n]
            if headerEnded(request) { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let response: StatusResponse
        var head = false
        if parts.count < 2 {
            response = StatusResponse(status: 400, body: "bad request\n")
        } else if parts[0] != "GET" && parts[0] != "HEAD" {
            response = StatusResponse(status: 405, body: "only GET and HEAD\n")
        } else {
            head = parts[0] == "HEAD"
            let path = String(parts[1].split(separator: "?", maxSplits: 1).first ?? "")
            response = routes[path]?() ?? StatusResponse(status: 404, body: "not found: try \(routes.keys.sorted().joined(separator: ", "))\n")
        }
        let body = Array(response.body.utf8)
        var text = "HTTP/1.1 \(response.status) \(reason(response.status))\r\n"
        text += "Content-Type: \(response.contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        var bytes = Array(text.utf8)
        if !head { bytes += body }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
    }

    /// Whether the request holds an empty line (the end of its header).
    private func headerEnded(_ request: [UInt8]) -> Bool {
        var previousNewline = false
        for byte in request where byte != 13 {
            if byte == 10 {
                if previousNewline { return true }
                previousNewline = true
            } else {
                previousNewline = false
            }
        }
        return false
    }

    private func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// The status server could not listen.
public struct StatusServerError: Error, CustomStringConvertible {
    /// Why.
    public var description: String
}
