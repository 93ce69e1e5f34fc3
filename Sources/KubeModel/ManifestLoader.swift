import Foundation

/// Reads manifests from files and directories (the only file I/O of this module).
public enum ManifestLoader {
    /// Decodes every manifest file under `paths`, in a stable order; unreadable paths and files
    /// become error issues.
    public static func load(_ paths: [String]) -> ManifestSet {
        var set = ManifestSet()
        for path in paths {
            let files: [String]
            do {
                files = try manifestFiles(under: path)
            } catch {
                set.issues.append(ManifestIssue(severity: .error, source: path, message: "\(error)"))
                continue
            }
            for file in files {
                do {
                    // Mapped, not copied: a cluster export can be tens of megabytes of which little is kept.
                    let data = try Data(contentsOf: URL(fileURLWithPath: file), options: .mappedIfSafe)
                    set.append(contentsOf: data.withUnsafeBytes { ManifestDecoder.decode(bytes: $0, source: file) })
                } catch {
                    set.issues.append(ManifestIssue(severity: .error, source: file, message: "cannot be read: \(error.localizedDescription)"))
                }
            }
        }
        return set
    }

    /// The manifest files a path names: itself if a file, else its *.yaml, *.yml and *.json files
    /// at any depth, sorted by path so that output never depends on directory order.
    public static func manifestFiles(under path: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw InputPathError(description: "no such file or directory")
        }
        guard isDirectory.boolValue else { return [path] }
        guard let walker = FileManager.default.enumerator(atPath: path) else {
            throw InputPathError(description: "cannot list the directory")
        }
        var files: [String] = []
        while let relative = walker.nextObject() as? String {
            let lower = relative.lowercased()
            guard lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") || lower.hasSuffix(".json") else { continue }
            let full = (path as NSString).appendingPathComponent(relative)
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: full, isDirectory: &isDir), !isDir.boolValue {
                files.append(full)
            }
        }
        return files.sorted()
    }
}

/// An input path that cannot be used.
public struct InputPathError: Error, CustomStringConvertible {
    /// What is wrong with the path.
    public var description: String
}

