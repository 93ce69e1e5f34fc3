@testable import picket
import Testing

/// Applies a unified diff to `old`, checking every context and removed line on the way.
func patch(_ old: String, with diff: String) -> String? {
    var lines = old.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    var offset = 0
    var hunkLines: [String] = []
    var oldStart = 0
    func flush() -> Bool {
        guard !hunkLines.isEmpty else { return true }
        var position = oldStart - 1 + offset
        if hunkLines.allSatisfy({ $0.hasPrefix("+") }) { position += 1 }
        for line in hunkLines {
            let body = String(line.dropFirst())
            switch line.first {
            case " ":
                guard position < lines.count, lines[position] == body else { return false }
                position += 1
            case "-":
                guard position < lines.count, lines[position] == body else { return false }
                lines.remove(at: position)
                offset -= 1
            case "+":
                lines.insert(body, at: position)
                position += 1
                offset += 1
            default: return false
            }
        }
        hunkLines = []
        return true
    }
    for line in diff.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
        if line.hasPrefix("--- ") || line.hasPrefix("+++ ") || line.isEmpty { continue }
        if line.hasPrefix("@@ ") {
            guard flush() else { return nil }
            let old = line.split(separator: " ")[1].dropFirst().split(separator: ",")
            oldStart = Int(old[0])!
            continue
        }
        hunkLines.append(line)
    }
    guard flush() else { return nil }
    return lines.joined(separator: "\n")
}

@Suite struct UnifiedDiffTests {
    @Test("equal texts give no diff")
    func equal() {
        #expect(unifiedDiff("a\nb\n", "a\nb\n", oldLabel: "x", newLabel: "y") == "")
    }

    @Test("a one-line change has one hunk with context")
    func simple() {
        let diff = unifiedDiff("1\n2\n3\n4\n5\n6\n7\n8\n", "1\n2\n3\n4x\n5\n6\n7\n8\n", oldLabel: "old", newLabel: "new")
        #expect(diff == "--- old\n+++ new\n@@ -1,7 +1,7 @@\n 1\n 2\n 3\n-4\n+4x\n 5\n 6\n 7\n")
    }

    @Test("random edits: the diff patches the old text into the new one")
    func randomised() {
        var state: UInt64 = 42
        func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(bound))
        }
        for _ in 0..<300 {
            let old = (0..<next(40)).map { _ in String(next(6)) }
            var new = old
            for _ in 0..<next(8) {
                switch next(3) {
                case 0 where !new.isEmpty: new.remove(at: next(new.count))
                case 1: new.insert(String(next(9)), at: next(new.count + 1))
                default: if !new.isEmpty { new[next(new.count)] = "x" }
                }
            }
            let a = old.joined(separator: "\n")
            let b = new.joined(separator: "\n")
            let diff = unifiedDiff(a, b, oldLabel: "a", newLabel: "b")
            if a == b {
                #expect(diff.isEmpty)
            } else {
                #expect(patch(a, with: diff) == b, "old \(old) new \(new)\n\(diff)")
            }
        }
    }
}
