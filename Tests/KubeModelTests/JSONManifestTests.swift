import Foundation
@testable import KubeModel
import Testing

@Suite struct JSONManifestTests {
    /// Decodes JSON text through the JSON path.
    func decode(_ json: String, source: String = "in.json") -> ManifestSet {
        ManifestDecoder.decode(json, source: source)
    }

    /// The issue lines of a set.
    func lines(_ set: ManifestSet) -> [String] { set.issues.map(\.description) }

    @Test("every fixture input decodes to the same set from JSON as from YAML", arguments: fixtureInputs())
    func fixtureParity(file: URL) throws {
        let text = try String(contentsOf: file, encoding: .utf8)
        let viaYAML = ManifestDecoder.decodeYAML(text, source: "f")
        let json: String
        if file.pathExtension == "json" {
            json = text
        } else {
            guard let converted = jsonStream(fromYAML: text) else {
                #expect(viaYAML.hasErrors, "YAML that does not convert must not parse either")
                return
            }
            json = converted
        }
        #expect(ManifestDecoder.isJSON(UnsafeRawBufferPointer(start: json, count: json.utf8.count)) || json.isEmpty)
        let viaJSON = ManifestDecoder.decode(json, source: "f")
        #expect(viaJSON.namespaces == viaYAML.namespaces)
        #expect(viaJSON.pods == viaYAML.pods)
        #expect(viaJSON.policies == viaYAML.policies)
        #expect(lines(viaJSON) == lines(viaYAML))
    }
}
