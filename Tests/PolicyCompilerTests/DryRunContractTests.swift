import Foundation
import Testing

/// The `picket dry-run` contract, driven through the built binary as an operator would.
@Suite struct DryRunContractTests {
    /// The `picket` executable next to the test bundle.
    static let picket: String = {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0])
        var dir = bundle.deletingLastPathComponent()
        // The bundle may be a directory (…/picketPackageTests.xctest/…) on some platforms.
        while !FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("picket").path) && dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("picket").path
    }()

    func fixture(_ name: String) -> String { packageRoot.appendingPathComponent("Fixtures/\(name)").path }

    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("picket-dryrun-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("stdout carries every file under a header, exit 0 for valid input")
    func stdout() throws {
        let result = try run(Self.picket, ["dry-run", "--node", "node-a", "--from", fixture("seed-3-whitelist-nsb-6379/input")])
        #expect(result.status == 0, "\(result.stderr)")
        let ipset = try String(contentsOfFile: fixture("seed-3-whitelist-nsb-6379/ipset.restore"), encoding: .utf8)
        let iptables = try String(contentsOfFile: fixture("seed-3-whitelist-nsb-6379/iptables.restore"), encoding: .utf8)
        #expect(result.stdout == "# ==== ipset.restore ====\n" + ipset + "# ==== iptables.restore ====\n" + iptables)
    }

    @Test("--output writes ipset.restore, iptables.restore and, for IPv6 pods, ip6tables.restore")
    func output() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try run(Self.picket, ["dry-run", "--node", "node-a", "--from", fixture("dual-stack/input"), "--output", dir.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.isEmpty)
        for name in ["ipset.restore", "iptables.restore", "ip6tables.restore"] {
            let written = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            #expect(written == (try String(contentsOfFile: fixture("dual-stack/\(name)"), encoding: .utf8)), "\(name)")
        }
        // A later IPv4-only run into the same directory leaves no stale IPv6 file behind.
        let again = try run(Self.picket, ["dry-run", "--node", "node-a", "--from", fixture("seed-1-namespace-internal-only/input"), "--output", dir.path])
        #expect(again.status == 0)
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("ip6tables.restore").path))
    }

    @Test("invalid policies: exit 2, one stderr line each naming file, object and field, rules still written")
    func invalidPolicies() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = fixture("invalid-policies/input")
        let result = try run(Self.picket, ["dry-run", "--node", "node-a", "--from", input, "--output", dir.path])
        #expect(result.status == 2)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.contains { $0 == "picket: error: \(input)/policies.yaml: NetworkPolicy shop/invalid-port-out-of-range: spec.ingress[0].ports[0].port: 70000 is not between 1 and 65535" })
        #expect(lines.filter { $0.hasPrefix("picket: error: ") }.count == 10)
        let iptables = try String(contentsOf: dir.appendingPathComponent("iptables.restore"), encoding: .utf8)
        #expect(iptables == (try String(contentsOfFile: fixture("invalid-policies/iptables.restore"), encoding: .utf8)))
    }

    @Test("a file that does not parse: exit 2 naming the file; the other files still count")
    func unparsable() throws {
        let input = fixture("unparsable-file/input")
        let result = try run(Self.picket, ["dry-run", "--node", "node-a", "--from", input])
        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("picket: error: \(input)/broken.yaml: does not parse: "))
        // good.yaml still compiles: its default deny isolates shop/web-a on node-a.
        #expect(result.stdout.contains("-A PICKET-INGRESS -m mark --mark "))
    }

    @Test("a missing path is an input error")
    func missingPath() throws {
        let result = try run(Self.picket, ["dry-run", "--node", "node-a", "--from", "/nonexistent/picket-manifests"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("/nonexistent/picket-manifests: no such file or directory"))
    }

    @Test("an invalid --node is refused naming --node, exit 2, nothing compiled")
    func invalidNode() throws {
        let result = try run(Self.picket, ["dry-run", "--node", "bad name", "--from", fixture("demo/input")])
        #expect(result.status == 2)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.hasPrefix("picket: error: --node: Invalid value: \"bad name\": a lowercase RFC 1123 subdomain"), "\(result.stderr)")
    }

    @Test("every rejected-input vector: exit 2, each error names its field, and the output holds only Picket's lines",
          arguments: GoldenCase.all().filter { $0.name.hasPrefix("rejected-") })
    func rejectedVectors(_ fixture: GoldenCase) throws {
        let input = fixture.directory.appendingPathComponent("input").path
        let result = try run(Self.picket, ["dry-run"] + fixture.arguments + ["--from", input])
        #expect(result.status == 2, "\(result.stderr)")
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("picket: error: ") }
        #expect(!errors.isEmpty)
        for line in errors {
            // `file: Kind ns/name: field: reason` (or `--node: reason`), one line each.
            #expect(line.contains(": metadata.") || line.contains(": spec.") || line.contains("--node: "), "\(line)")
        }
        for line in result.stdout.split(separator: "\n") {
            let ok = line.hasPrefix("#") || line == "*filter" || line == "*mangle" || line.hasPrefix(":PICKET-") || line.hasPrefix("-A PICKET-")
                || line.hasPrefix("-I FORWARD 1 ") || line.hasPrefix("-I INPUT 1 ")
                || line.hasPrefix("-I FORWARD 2 ") || line.hasPrefix("-I INPUT 2 ") || line == "COMMIT"
                || line.hasPrefix("create picket-") || line.hasPrefix("add picket-")
            #expect(ok, "\(line)")
        }
    }

    @Test("usage errors name the missing option")
    func usage() throws {
        let result = try run(Self.picket, ["dry-run", "--from", fixture("demo/input")])
        #expect(result.status == 64)
        #expect(result.stderr.contains("--node"))
    }
}
