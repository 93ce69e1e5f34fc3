import Foundation
import Yams

/// Manifests written as YAML, rewritten as JSON: for the tests that check both syntaxes decode
/// alike and for the JSON fuzz target's seeds.
public enum YAMLToJSON {
    /// YAML text as a JSON stream: each YAML document becomes one JSON value, with scalars typed as
    /// YAML resolves them (int, float, bool, null, else string). Nil when the YAML does not parse.
    public static func stream(fromYAML yaml: String) -> String? {
        guard var documents = try? compose_all(yaml: yaml) else { return nil }
        var out: [String] = []
        while let document = documents.next() { out.append(json(document)) }
        return documents.error == nil ? out.joined(separator: "\n") : nil
    }

    /// One YAML node as JSON text.
    static func json(_ node: Yams.Node) -> String {
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
    public static func quoted(_ text: String) -> String {
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
}
