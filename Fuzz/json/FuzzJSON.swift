// picket-fuzz-json: libFuzzer target over the JSON manifest path (ManifestDecoder.decodeJSON).
//
// Built two ways. For fuzzing (`make fuzz-json`), with `-sanitize=fuzzer,address -DFUZZING`:
// the entry starts libFuzzer's driver, which calls `LLVMFuzzerTestOneInput` with each input. In a normal
// build it is a small tool: `picket-fuzz-json seeds DIR FIXTURES` writes every Fixtures input as
// a JSON seed (YAML converted as Yams resolves it), and `picket-fuzz-json FILE...` runs files
// through the same entry (to replay a crash without libFuzzer).
import Foundation
import KubeModel

/// One input: decode it; a trap, an overflow or a memory error is the finding.
@_cdecl("LLVMFuzzerTestOneInput") @discardableResult
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let set = ManifestDecoder.decodeJSON(bytes, source: "fuzz.json")
    // Invalid input is always said: a syntax error is one issue, never a partial silent result.
    if set.issues.contains(where: { $0.message.hasPrefix("does not parse") }) && set.issues.last?.message.hasPrefix("does not parse") != true {
        fatalError("a syntax error that is not the last issue")
    }
    return 0
}

#if FUZZING
// SwiftPM links an executable's entry as `<module>_main` (aliased to `main`), so libFuzzer's own
// `main` is not used: this entry hands control to libFuzzer's driver, a C function looked up by
// name (the build exports the executable's symbols) so that it is called as C.
typealias FuzzerDriver = @convention(c) (
    UnsafeMutablePointer<Int32>,
    UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("picket_fuzz_json_main")
func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "LLVMFuzzerRunDriver") else {
        FileHandle.standardError.write(Data("picket-fuzz-json: libFuzzer's driver is not linked (build with -sanitize=fuzzer)\n".utf8))
        return 2
    }
    let driver = unsafeBitCast(symbol, to: FuzzerDriver.self)
    var argc = argc
    var argv = argv
    return driver(&argc, &argv) { data, size in fuzzJSON(data, size) }
}
#else
@main
struct FuzzJSONTool {
    static func main() throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "seeds", arguments.count == 3 {
            try writeSeeds(into: arguments[1], from: arguments[2])
            return
        }
        guard !arguments.isEmpty else {
            print("usage: picket-fuzz-json seeds DIR FIXTURES | picket-fuzz-json FILE...")
            exit(2)
        }
        for path in arguments {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            data.withUnsafeBytes { fuzzJSON($0.baseAddress?.assumingMemoryBound(to: UInt8.self), $0.count) }
            print("\(path): ok")
        }
    }

    /// Writes each manifest under `fixtures/*/input` as JSON into `directory`.
    static func writeSeeds(into directory: String, from fixtures: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let walker = FileManager.default.enumerator(atPath: fixtures)
        var written = 0
        while let relative = walker?.nextObject() as? String {
            guard relative.contains("/input/") || relative.contains("/before/") || relative.contains("/after/") else { continue }
            let path = (fixtures as NSString).appendingPathComponent(relative)
            let json: String
            if relative.hasSuffix(".json") {
                json = try String(contentsOfFile: path, encoding: .utf8)
            } else if relative.hasSuffix(".yaml") || relative.hasSuffix(".yml") {
                guard let converted = YAMLToJSON.stream(fromYAML: try String(contentsOfFile: path, encoding: .utf8)) else { continue }
                json = converted
            } else {
                continue
            }
            let name = relative.replacingOccurrences(of: "/", with: "_") + ".json"
            try Data(json.utf8).write(to: URL(fileURLWithPath: directory).appendingPathComponent(name))
            written += 1
        }
        print("wrote \(written) seeds to \(directory)")
    }
}

#endif
