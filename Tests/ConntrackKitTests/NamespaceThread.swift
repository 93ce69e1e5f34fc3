import Glibc

/// A failure in the test scaffolding (namespaces, commands, threads), with what went wrong.
struct ScaffoldError: Error, CustomStringConvertible {
    /// What failed and why.
    var description: String
}

/// `setns(2)`, looked up at run time: Glibc's Swift module hides it (it needs `_GNU_SOURCE`)
/// and this test target has no C module of its own.
private let setNamespace: (@convention(c) (Int32, Int32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { return nil }  // RTLD_DEFAULT
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
}()

/// `CLONE_NEWNET` from <sched.h>, hidden with `setns`.
private let cloneNewNet: Int32 = 0x4000_0000

/// Where a namespace thread leaves its body's outcome; read only after `pthread_join`.
private final class Outcome<T>: @unchecked Sendable {
    var value: Result<T, any Error>?
}

/// The work a namespace thread runs, handed to it through the `pthread_create` argument.
private final class ThreadWork: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Runs `body` on a new thread that has first joined the network namespace
/// `/run/netns/<name>`, waits for the thread and returns or rethrows the body's outcome.
///
/// Network namespace membership is per thread (`setns(CLONE_NEWNET)`), and a netlink socket
/// belongs to the namespace of the thread that opens it; the thread ends after `body`, so the
/// namespace never leaks to other work.
func onThread<T>(inNetworkNamespace name: String, _ body: @escaping () throws -> T) throws -> T {
    let outcome = Outcome<T>()
    let path = "/run/netns/\(name)"
    let work = ThreadWork {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            outcome.value = .failure(ScaffoldError(description: "open \(path): \(String(cString: strerror(errno)))"))
            return
        }
        defer { close(descriptor) }
        guard let setNamespace else {
            outcome.value = .failure(ScaffoldError(description: "setns not found by dlsym"))
            return
        }
        guard setNamespace(descriptor, cloneNewNet) == 0 else {
            outcome.value = .failure(ScaffoldError(description: "setns \(path): \(String(cString: strerror(errno)))"))
            return
        }
        outcome.value = Result { try body() }
    }
    var thread = pthread_t()
    let argument = Unmanaged.passRetained(work).toOpaque()
    let created = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadWork>.fromOpaque(raw!).takeRetainedValue().run()
        return nil
    }, argument)
    guard created == 0 else {
        Unmanaged<ThreadWork>.fromOpaque(argument).release()
        throw ScaffoldError(description: "pthread_create: \(String(cString: strerror(created)))")
    }
    let joined = pthread_join(thread, nil)
    guard joined == 0 else { throw ScaffoldError(description: "pthread_join: \(String(cString: strerror(joined)))") }
    guard let value = outcome.value else { throw ScaffoldError(description: "namespace thread left no outcome") }
    return try value.get()
}

/// Drops CAP_NET_ADMIN from the effective set of the calling thread (capabilities are per
/// thread), so that conntrack requests from it fail with EPERM. Use on a throwaway thread.
func dropNetworkAdministration() throws {
    typealias CapabilityCall = @convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Int32
    guard let get = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "capget"),
          let set = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "capset")
    else { throw ScaffoldError(description: "capget/capset not found by dlsym") }
    let capget = unsafeBitCast(get, to: CapabilityCall.self)
    let capset = unsafeBitCast(set, to: CapabilityCall.self)
    // struct __user_cap_header_struct { u32 version; int pid; }: version 3, pid 0 = this thread.
    var header: [UInt32] = [0x2008_0522, 0]
    // Two struct __user_cap_data_struct { u32 effective, permitted, inheritable; }.
    var data = [UInt32](repeating: 0, count: 6)
    let capNetAdmin: UInt32 = 12
    let status = header.withUnsafeMutableBytes { header in
        data.withUnsafeMutableBytes { data in
            guard capget(header.baseAddress!, data.baseAddress!) == 0 else { return Int32(-1) }
            data.storeBytes(of: data.load(as: UInt32.self) & ~(1 << capNetAdmin), as: UInt32.self)
            return capset(header.baseAddress!, data.baseAddress!)
        }
    }
    guard status == 0 else { throw ScaffoldError(description: "capset: \(String(cString: strerror(errno)))") }
}
