import Foundation
import Glibc
import IPSetKit
import Synchronization
import Testing

/// `name type family: members` per set of `ipset save` text, for readable comparisons.
private func summary(_ text: String) -> [String] {
    savedSets(text).map { set in
        let words = set.header.split(separator: " ")
        let family = words.firstIndex(of: "family").map { words[$0 + 1] } ?? "?"
        return "\(set.name) \(words.first ?? "?") \(family): \(set.members.joined(separator: " "))"
    }
}

/// `count` distinct IPv4 addresses 10.x.y.z.
private func addresses(_ count: Int, first: Int = 1) -> [String] {
    (first..<(first + count)).map { "10.\(($0 >> 16) & 255).\(($0 >> 8) & 255).\($0 & 255)" }
}

/// A batch whose third line fails, and what must hold afterwards.
struct LineThreeFailure: Sendable, CustomTestStringConvertible {
    /// What goes wrong in line 3.
    var name: String
    /// The batch, run after `create t-a hash:ip`, `create t-b hash:ip`,
    /// `create t-6 hash:ip family inet6`.
    var batch: String
    /// A part of the expected message.
    var message: String
    /// `summary` of the sets afterwards.
    var after: [String]

    var testDescription: String { name }

    static let all: [LineThreeFailure] = [
        LineThreeFailure(
            name: "add to a set that does not exist",
            batch: "add t-a 10.0.0.1\nadd t-b 10.0.0.2\nadd t-missing 10.0.0.3\nadd t-a 10.0.0.4\n",
            message: "The set with the given name does not exist",
            after: ["t-6 hash:ip inet6: ", "t-a hash:ip inet: 10.0.0.1", "t-b hash:ip inet: 10.0.0.2"]),
        LineThreeFailure(
            name: "add an element already added (found by the kernel in a batched message)",
            batch: "add t-a 10.0.0.1\nadd t-a 10.0.0.2\nadd t-a 10.0.0.1\nadd t-a 10.0.0.4\n",
            message: "Element cannot be added to the set: it's already added",
            after: ["t-6 hash:ip inet6: ", "t-a hash:ip inet: 10.0.0.1 10.0.0.2", "t-b hash:ip inet: "]),
        LineThreeFailure(
            name: "syntax error (libipset names no line: the shim's stream offset does)",
            batch: "# a comment counts as a line\nadd t-a 10.0.0.1\nadd t-a 10.0.0.2 bogus\nadd t-a 10.0.0.4\n",
            message: "Unknown argument: `bogus'",
            after: ["t-6 hash:ip inet6: ", "t-a hash:ip inet: 10.0.0.1", "t-b hash:ip inet: "]),
        LineThreeFailure(
            name: "missing mandatory option (libipset reports it, then would still send the command)",
            batch: "add t-a 10.0.0.1\nadd t-b 10.0.0.2\ncreate t-bitmap bitmap:ip\nadd t-a 10.0.0.4",
            message: "Mandatory option `range' is missing",
            after: ["t-6 hash:ip inet6: ", "t-a hash:ip inet: 10.0.0.1", "t-b hash:ip inet: 10.0.0.2"]),
        LineThreeFailure(
            name: "plain address required (inet6 range), last line without a line break",
            batch: "add t-6 fd00::1\nadd t-b 10.0.0.2\nadd t-6 fd00::/120",
            message: "Syntax error: plain IP address must be supplied: fd00::/120",
            after: ["t-6 hash:ip inet6: fd00::1", "t-a hash:ip inet: ", "t-b hash:ip inet: 10.0.0.2"]),
    ]
}

/// In-process ipset restore and save, each test in its own scratch network namespace.
@Suite("IPSetSession", rootOnly)
struct IPSetSessionTests {
    @Test("create and add, then save shows exactly those sets and members")
    func createAddSave() throws {
        try withScratchSession { session, namespace in
            try session.restore("""
                create t-ip hash:ip
                add t-ip 10.0.0.1
                add t-ip 10.0.0.2
                create t-net hash:net
                add t-net 10.0.0.0/8
                add t-net 10.1.0.0/16 nomatch
                create t-port hash:ip,port
                add t-port 10.0.0.1,tcp:80
                add t-port 10.0.0.1,udp:53
                add t-port 10.0.0.2,sctp:9000
                create t-v6 hash:ip family inet6
                add t-v6 fd00::1
                add t-v6 fd00::2
                """)
            let saved = try session.save()
            #expect(summary(saved) == [
                "t-ip hash:ip inet: 10.0.0.1 10.0.0.2",
                "t-net hash:net inet: 10.0.0.0/8 10.1.0.0/16 nomatch",
                "t-port hash:ip,port inet: 10.0.0.1,tcp:80 10.0.0.1,udp:53 10.0.0.2,sctp:9000",
                "t-v6 hash:ip inet6: fd00::1 fd00::2",
            ])
            #expect(saved.hasSuffix("\n"))
            // The CLI, in the same namespace, sees the same sets, headers included.
            #expect(savedSets(try ipsetCLI(namespace, "save")) == savedSets(saved))
        }
    }

    @Test("An error in line 3 names line 3 and its text; lines 1-2 stay applied, line 4 does not run",
          arguments: LineThreeFailure.all)
    func errorInLineThree(_ failure: LineThreeFailure) throws {
        try withScratchSession { session, namespace in
            try session.restore("create t-a hash:ip\ncreate t-b hash:ip\ncreate t-6 hash:ip family inet6\n")
            let lineThree = failure.batch.split(separator: "\n", omittingEmptySubsequences: false)[2]
            let error = try #require(throws: IPSetError.self) { try session.restore(failure.batch) }
            #expect(error.line == 3)
            #expect(error.lineText == String(lineThree))
            #expect(error.message.contains(failure.message), "\(error)")
            #expect(!error.message.hasPrefix("Error in line"))
            #expect(error.description.hasPrefix("ipset restore line 3 (\(lineThree)): "))
            #expect(summary(try session.save()) == failure.after)
            #expect(summary(try ipsetCLI(namespace, "save")) == failure.after)
        }
    }

    @Test("When a buffered earlier line fails in the kernel, it is the error, not the later line")
    func earliestFailingLineWins() throws {
        try withScratchSession { session, _ in
            try session.restore("create t-a hash:ip\nadd t-a 10.0.0.1\n")
            // Line 2 is buffered (the kernel rejects it only when the buffer is sent); line 3
            // fails while libipset parses it.
            let error = try #require(throws: IPSetError.self) {
                try session.restore("add t-a 10.0.0.2\nadd t-a 10.0.0.1\nadd t-missing 10.0.0.3\n")
            }
            #expect(error.line == 2)
            #expect(error.lineText == "add t-a 10.0.0.1")
            #expect(error.message.contains("already added"))
            #expect(members(of: "t-a", in: try session.save()) == ["10.0.0.1", "10.0.0.2"])
        }
    }

    @Test("swap exchanges the members of two sets")
    func swap() throws {
        try withScratchSession { session, namespace in
            try session.restore("""
                create t-live hash:ip
                add t-live 10.0.0.1
                create t-next hash:ip
                add t-next 10.0.0.2
                add t-next 10.0.0.3
                """)
            try session.restore("swap t-next t-live\n")
            let expected = ["t-live hash:ip inet: 10.0.0.2 10.0.0.3", "t-next hash:ip inet: 10.0.0.1"]
            #expect(summary(try session.save()) == expected)
            #expect(summary(try ipsetCLI(namespace, "save")) == expected)
            // The replacement idiom: fill a temporary set, swap, destroy the old one.
            try session.restore("""
                create t-tmp hash:ip
                add t-tmp 10.0.0.9
                swap t-tmp t-live
                destroy t-tmp
                """)
            #expect(summary(try session.save()) == ["t-live hash:ip inet: 10.0.0.9", "t-next hash:ip inet: 10.0.0.1"])
        }
    }

    @Test("destroy removes a set; destroying a missing set fails on its line")
    func destroy() throws {
        try withScratchSession { session, namespace in
            try session.restore("create t-a hash:ip\nadd t-a 10.0.0.1\ncreate t-b hash:net\n")
            try session.restore("destroy t-a\n")
            #expect(summary(try session.save()) == ["t-b hash:net inet: "])
            #expect(summary(try ipsetCLI(namespace, "save")) == ["t-b hash:net inet: "])
            let error = try #require(throws: IPSetError.self) { try session.restore("\ndestroy t-a\n") }
            #expect(error.line == 2)
            #expect(error.message.contains("does not exist"), "\(error)")
        }
    }

    @Test("del, flush and rename")
    func delFlushRename() throws {
        try withScratchSession { session, namespace in
            try session.restore("""
                create t-a hash:ip
                add t-a 10.0.0.1
                add t-a 10.0.0.2
                add t-a 10.0.0.3
                create t-b hash:ip
                add t-b 10.0.0.4
                del t-a 10.0.0.2
                rename t-a t-c
                flush t-b
                """)
            let expected = ["t-b hash:ip inet: ", "t-c hash:ip inet: 10.0.0.1 10.0.0.3"]
            #expect(summary(try session.save()) == expected)
            #expect(summary(try ipsetCLI(namespace, "save")) == expected)
        }
    }

    @Test("save(prefix:) keeps only the sets whose name starts with the prefix")
    func savePrefix() throws {
        try withScratchSession { session, _ in
            try session.restore("""
                create picket-a hash:ip
                add picket-a 10.0.0.1
                create picket-ab hash:ip
                create other-picket-a hash:ip
                add other-picket-a 10.0.0.2
                """)
            #expect(summary(try session.save(prefix: "picket-a")) == [
                "picket-a hash:ip inet: 10.0.0.1", "picket-ab hash:ip inet: ",
            ])
            #expect(summary(try session.save(prefix: "picket-ab")) == ["picket-ab hash:ip inet: "])
            #expect(summary(try session.save()).count == 3)
            #expect(try session.save(prefix: "nothing-") == "")
        }
    }

    @Test("10k adds in one batch complete")
    func tenThousandAdds() throws {
        try withScratchSession { session, namespace in
            let added = addresses(10_000)
            let batch = "create t-big hash:ip hashsize 16384 maxelem 20000\n"
                + added.map { "add t-big \($0)\n" }.joined()
            let clock = ContinuousClock()
            let elapsed = try clock.measure { try session.restore(batch) }
            print("IPSetKitTests: 10k adds through IPSetSession.restore: \(elapsed)")
            #expect(members(of: "t-big", in: try session.save()) == added.sorted())
            let header = try ipsetCLI(namespace, "list", "-t", "t-big")
            #expect(header.contains("Number of entries: 10000"), "\(header)")
        }
    }

    @Test("The session survives errors; line numbers restart at 1 in every batch")
    func survivesErrors() throws {
        try withScratchSession { session, _ in
            let first = try #require(throws: IPSetError.self) {
                try session.restore("create t-a hash:ip\nadd t-a 10.0.0.1\nadd t-a nonsense\n")
            }
            #expect(first.line == 3)
            // A failure mid-command leaves nothing behind: the next batch runs cleanly.
            try session.restore("add t-a 10.0.0.2\n")
            let second = try #require(throws: IPSetError.self) {
                try session.restore("add t-a 10.0.0.3\nadd t-a 10.0.0.3\n")
            }
            #expect(second.line == 2)
            let third = try #require(throws: IPSetError.self) { try session.restore("create t-a hash:ip\n") }
            #expect(third.line == 1)
            #expect(third.message.contains("already exists"), "\(third)")
            #expect(members(of: "t-a", in: try session.save()) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        }
    }

    @Test("Lines libipset would split (over 1022 bytes) are rejected before anything runs")
    func longLineRejected() throws {
        try withScratchSession { session, _ in
            let long = "# " + String(repeating: "x", count: 1100)
            let error = try #require(throws: IPSetError.self) {
                try session.restore("create t-a hash:ip\n\(long)\nadd t-a 10.0.0.1\n")
            }
            #expect(error.line == 2)
            #expect(error.message.contains("longer than 1022 bytes"))
            #expect(try session.save() == "")
            // 1022 bytes is fine.
            try session.restore("create t-a hash:ip\n# " + String(repeating: "x", count: 1020) + "\n")
            #expect(summary(try session.save()) == ["t-a hash:ip inet: "])
        }
    }

    @Test("An empty batch and a batch of comments do nothing")
    func emptyBatch() throws {
        try withScratchSession { session, _ in
            try session.restore("")
            try session.restore("# nothing\n\n   \n")
            #expect(try session.save() == "")
        }
    }

    @Test("Calls from several threads at once are serialised")
    func concurrentCalls() throws {
        try withScratchSession { session, _ in
            try session.restore("create t-a hash:ip hashsize 4096\n")
            let failures = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 4) { worker in
                do {
                    // Each call joins the scratch namespace on a thread of its own.
                    try session.restore(addresses(500, first: 1 + worker * 1000).map { "add t-a \($0)\n" }.joined())
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
            #expect(failures.withLock { $0 } == [])
            #expect(members(of: "t-a", in: try session.save()).count == 2000)
        }
    }
}
