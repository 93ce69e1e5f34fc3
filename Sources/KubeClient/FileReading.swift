#if canImport(Glibc)
import Glibc
#endif

/// What tells one version of a file from the next: a replacement (a new inode, as the kubelet's
/// atomic writer renames projected tokens into place) or a rewrite (size or modification time)
/// changes at least one field. A rewrite in place to the same size within one tick of the file
/// system's clock goes unseen.
struct FileIdentity: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int

    /// The identity `stat` reports.
    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = Int(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int(info.st_mtim.tv_nsec)
    }
}

/// Why a file could not be read, as the system says it.
struct FileReadError: Error {
    /// `strerror`'s text, or what was wrong with the file.
    var reason: String
    /// Whether the file does not exist (ENOENT), which some callers accept.
    var isMissing: Bool
}

/// Whole-file reads with the system's reasons for failures (kubeconfig files, tokens, CAs).
enum FileReader {
    /// The current identity of the file at `path` (following symlinks).
    static func identity(of path: String) throws(FileReadError) -> FileIdentity {
        var info = stat()
        guard stat(path, &info) == 0 else { throw lastError() }
        return FileIdentity(info)
    }

    /// The file's bytes and the identity of the version read.
    static func read(_ path: String) throws(FileReadError) -> (bytes: [UInt8], identity: FileIdentity) {
        let (fd, info) = try openForReading(path)
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw lastError()
            }
            bytes += buffer[0..<count]
        }
        return (bytes, FileIdentity(info))
    }

    /// Fails unless the file can be opened for reading and is not a directory.
    static func checkReadable(_ path: String) throws(FileReadError) {
        close(try openForReading(path).fd)
    }

    /// The file's text, which must be UTF-8.
    static func text(_ path: String) throws(FileReadError) -> String {
        let bytes = try read(path).bytes
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw FileReadError(reason: "is not UTF-8 text", isMissing: false)
        }
        return text
    }

    /// An open descriptor (the caller closes it) and the identity of what it opened, which must
    /// not be a directory.
    private static func openForReading(_ path: String) throws(FileReadError) -> (fd: Int32, info: stat) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw lastError() }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = lastError()
            close(fd)
            throw error
        }
        guard (info.st_mode & S_IFMT) != S_IFDIR else {
            close(fd)
            throw FileReadError(reason: "is a directory", isMissing: false)
        }
        return (fd, info)
    }

    /// `errno` as an error.
    private static func lastError() -> FileReadError {
        let code = errno
        return FileReadError(reason: String(cString: strerror(code)), isMissing: code == ENOENT)
    }
}
