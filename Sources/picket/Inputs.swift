import ArgumentParser
import Foundation
import KubeModel

/// Where cluster objects come from: manifest files and directories.
struct ManifestOptions: ParsableArguments {
    @Option(
        name: .customLong("from"),
        help: ArgumentHelp(
            "A manifest file, or a directory read recursively (*.yaml, *.yml, *.json). Repeatable.",
            discussion: "Files hold objects as `kubectl get -o yaml|json` prints them: single objects, multi-document YAML, or Lists.",
            valueName: "path"))
    var paths: [String] = []

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one --from PATH") }
    }

    /// Reads and decodes every manifest under `paths`, in a stable order.
    func load() -> ManifestSet {
        ManifestLoader.load(paths)
    }
}

/// Writes manifest issues to stderr, one line each; returns whether any was an error.
@discardableResult
func report(_ issues: [ManifestIssue]) -> Bool {
    var sawError = false
    for issue in issues {
        sawError = sawError || issue.severity == .error
        FileHandle.standardError.write(Data("picket: \(issue.severity.rawValue): \(issue)\n".utf8))
    }
    return sawError
}

/// Writes one line to stderr.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
