import Foundation
import Yams

/// The package root (for Fixtures/).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// YAML text as a JSON stream: each YAML document becomes one JSON value, with scalars typed as
/// YAML resolves them (int, float, bool, null, else string). Nil when the YAML does not parse.
func jsonStream(fromYAML yaml: String) -> String? {
    guard var documents = try? compose_all(yaml: yaml) else { return nil }
    var out: [String] = []
    while let document = documents.next() { out.append(json(document)) }
    return documents.error == nil ? out.joined(separator: "\n") : nil
}

/// One YAML node as JSON text.
func json(_ node: Node) -> String {
    switch node {
    case .mapping(let mapping):
        return "{" + mapping.map { "\(quoted($0.key.string ?? "")): \(json($0.value))" }.joined(separator: ", ") + "}"
    case .sequence(let sequence):
        return "[" + sequence.map(json).joined(separator: ", ") + "]"
    case .scalar(let scalar):
        switch node.tag.description {
        case Tag.Name.int.rawValue, Tag.Name.float.rawValue:
            return scalar.string.hasPrefix("+") ? String(scalar.string.dropFirst()) : scalar.string
        case Tag.Name.bool.rawValue: return node.bool == true ? "true" : "false"
        case Tag.Name.null.rawValue: return "null"
        default: return quoted(scalar.string)
        }
    case .alias:
        return "null"
    }
}

/// A JSON string literal.
func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

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
