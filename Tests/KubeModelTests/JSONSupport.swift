import Foundation
import Yams

/// The package root (for Fixtures/).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Every manifest file under Fixtures/*/input, sorted.
func fixtureInputs() -> [URL] {
    let fixtures = packageRoot.appendingPathComponent("Fixtures")
    let cases = (try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? []
    var files: [URL] = []
    for name in cases.sorted() {
        let input = fixtures.appendingPathComponent(name).appendingPathComponent("input")
        for file in ((try? FileManager.default.contentsOfDirectory(atPath: input.path)) ?? []).sorted() {
            files.append(input.appendingPathComponent(file))
        }
    }
    return files
}
