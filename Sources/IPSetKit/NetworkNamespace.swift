// Scratch network namespaces for tests that touch the kernel (ipset, iptables, conntrack) without
// touching the host's state.
//
// Network namespace membership is per thread on Linux, and sockets (netlink included) belong
// to the namespace of the thread that created them. So the work runs on a dedicated pthread
// that first joins the namespace with setns(CLONE_NEWNET) and ends when the work ends: no
// thread of the Swift concurrency pool, nor the caller's thread, ever changes namespace.
// (unshare is not needed: unlike a mount namespace, joining a network namespace does not
// require an unshared filesystem context.)

import CIPSet
import Foundation
import Glibc

/// A failure to create, enter or delete a network namespace.
public struct NetworkNamespaceError: Error, CustomStringConvertible {
    /// The namespace name (`ip netns` name) or path.
    public var namespace: String
    /// What failed, with the cause.
    public var message: String

    /// An error about `namespace`.
    public init(namespace: String, message: String) {
        self.namespace = namespace
        self.message = message
    }

    /// `network namespace NAME: message`.
    public var description: String { "network namespace \(namespace): \(message)" }
}

/// Runs `body` inside a new, empty network namespace named `name`, and deletes the namespace
/// afterwards.
///
/// Creates the namespace with `ip netns add NAME` (so it is visible to `ip netns exec NAME ...`
/// while `body` runs), runs `body` on a dedicated thread that first joins it
/// (`setns(open("/run/netns/NAME"), CLONE_NEWNET)`), waits for that thread, then deletes the
/// namespace with `ip netns delete NAME`, also when `body` throws. Sockets `body` opens
/// (libipset's netlink socket, for instance) belong to the namespace; processes it starts
/// inherit it. The caller's thread never changes namespace.
///
/// Needs root (CAP_SYS_ADMIN) and the `ip` command. Used by IPSetKit's, the executor's and
/// `picket apply`'s tests; name namespaces uniquely per process (for example
/// `pkt-ipset-<pid>-<n>`), as tests run in parallel. Swift Testing attributes `#expect` and
/// `Issue.record` to a test through task-local state, which the namespace thread lacks: return
/// what to check from `body` and check it on the test's task.
///
/// - Returns: `body`'s result.
/// - Throws: `body`'s error, or else a `NetworkNamespaceError` when the namespace cannot be
///   created, entered or deleted.
public func inNetworkNamespace<T>(_ name: String, _ body: () throws -> T) throws -> T {
    try runIP(["netns", "add", name], namespace: name)
    var deletion: NetworkNamespaceError?
    let result: T
    do {
        defer {
            do throws(NetworkNamespaceError) {
                try runIP(["netns", "delete", name], namespace: name)
            } catch {
                deletion = error
            }
        }
        result = try onThread(inNetworkNamespaceAt: "/run/netns/\(name)", body)
    }
    if let deletion { throw deletion }
    return result
}

/// Runs `body` on a dedicated thread that first joins the existing network namespace at `path`
/// (a bind mount such as `/run/netns/NAME`, or `/proc/PID/ns/net`), and waits for it.
///
/// The namespace is neither created nor deleted. See `inNetworkNamespace(_:_:)`.
///
/// - Returns: `body`'s result.
/// - Throws: `body`'s error, or a `NetworkNamespaceError` when `path` cannot be opened or
///   joined or the thread cannot be started.
public func onThread<T>(inNetworkNamespaceAt path: String, _ body: () throws -> T) throws -> T {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
        throw NetworkNamespaceError(namespace: path, message: "cannot open: \(String(cString: strerror(errno)))")
    }
    defer { close(descriptor) }
    return try withoutActuallyEscaping(body) { body in
        var outcome: Result<T, any Error>?
        // `work` is called on the new thread while this thread waits in pthread_join, which
        // orders its writes to `outcome` before the read below.
        let job = NamespaceThreadJob(descriptor: descriptor) {
            outcome = Result { try body() }
        }
        try job.runAndWait(path: path)
        guard let outcome else {
            throw NetworkNamespaceError(namespace: path, message: "cannot join: \(String(cString: strerror(job.joinError)))")
        }
        return try outcome.get()
    }
}

/// The state a namespace thread needs, handed over through pthread_create's argument.
private final class NamespaceThreadJob: @unchecked Sendable {
    // @unchecked: fields are written by the new thread only before it exits and read by the
    // creating thread only after pthread_join.

    /// An open descriptor of the namespace to join.
    let descriptor: Int32
    /// The work, run only after setns succeeded.
    let work: () -> Void
    /// errno of a failed setns, or 0.
    var joinError: Int32 = 0

    init(descriptor: Int32, work: @escaping () -> Void) {
        self.descriptor = descriptor
        self.work = work
    }

    /// Starts the thread, which joins the namespace and runs `work`, and waits for it to end.
    /// `path` names the namespace in errors.
    func runAndWait(path: String) throws(NetworkNamespaceError) {
        var thread = pthread_t()
        let argument = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { argument in
            let job = Unmanaged<NamespaceThreadJob>.fromOpaque(argument!).takeRetainedValue()
            if picket_setns(job.descriptor, picket_clone_newnet) == 0 {
                job.work()
            } else {
                job.joinError = errno
            }
            return nil
        }, argument)
        guard created == 0 else {
            Unmanaged<NamespaceThreadJob>.fromOpaque(argument).release()
            throw NetworkNamespaceError(namespace: path, message: "pthread_create: \(String(cString: strerror(created)))")
        }
        let joined = pthread_join(thread, nil)
        guard joined == 0 else {
            // Not reachable for a joinable thread we created; continuing would race with it.
            fatalError("pthread_join: \(String(cString: strerror(joined)))")
        }
    }
}

/// Runs `ip ARGUMENTS`, throwing with its standard error output when it fails.
private func runIP(_ arguments: [String], namespace: String) throws(NetworkNamespaceError) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: ipExecutable())
    process.arguments = arguments
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    do {
        try process.run()
    } catch {
        throw NetworkNamespaceError(namespace: namespace, message: "cannot run ip \(arguments.joined(separator: " ")): \(error)")
    }
    let output = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        let text = String(decoding: output, as: UTF8.self).trimmingTrailingWhitespace()
        throw NetworkNamespaceError(
            namespace: namespace,
            message: "ip \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text)")
    }
}

/// The path of `ip`: the first of PATH and the sbin directories that has it.
private func ipExecutable() -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    for directory in directories where access(directory + "/ip", X_OK) == 0 {
        return directory + "/ip"
    }
    return "/usr/sbin/ip"
}
