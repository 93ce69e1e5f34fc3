/// A unified diff of two texts (Myers' O((N+M)D) algorithm), as `diff -u` prints it, or ""
/// when they are equal.
func unifiedDiff(_ old: String, _ new: String, oldLabel: String, newLabel: String, context: Int = 3) -> String {
    let a = old.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let b = new.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard a != b else { return "" }
    let script = editScript(a, b)

    // Group the script into hunks: changes with `context` unchanged lines around them, merged
    // when fewer than 2 * context unchanged lines separate them.
    var out = "--- \(oldLabel)\n+++ \(newLabel)\n"
    var done = 0
    while let firstChange = script[done...].firstIndex(where: { $0.kind != .same }) {
        var lastChange = firstChange
        var j = firstChange + 1
        while j < script.count {
            if script[j].kind != .same {
                lastChange = j
            } else if j - lastChange > 2 * context {
                break
            }
            j += 1
        }
        let hunk = script[max(done, firstChange - context)..<min(script.count, lastChange + context + 1)]
        let oldCount = hunk.filter { $0.kind != .insert }.count
        let newCount = hunk.filter { $0.kind != .delete }.count
        let oldStart = hunk.first!.oldIndex + (oldCount == 0 ? 0 : 1)
        let newStart = hunk.first!.newIndex + (newCount == 0 ? 0 : 1)
        out += "@@ -\(oldStart),\(oldCount) +\(newStart),\(newCount) @@\n"
        for edit in hunk {
            switch edit.kind {
            case .same: out += " \(a[edit.oldIndex])\n"
            case .delete: out += "-\(a[edit.oldIndex])\n"
            case .insert: out += "+\(b[edit.newIndex])\n"
            }
        }
        done = hunk.endIndex
    }
    return out
}

/// One step of an edit script; indexes point at the line in the old and new text (for an
/// insert, `oldIndex` is where it goes; for a delete, `newIndex` likewise).
private struct Edit {
    enum Kind { case same, delete, insert }
    var kind: Kind
    var oldIndex: Int
    var newIndex: Int
}

/// The shortest edit script from `a` to `b` (Myers 1986, with the trace kept for backtracking).
private func editScript(_ a: [String], _ b: [String]) -> [Edit] {
    let n = a.count
    let m = b.count
    let max = n + m
    var v = [Int](repeating: 0, count: 2 * max + 2)
    var trace: [[Int]] = []
    outer: for d in 0...max {
        trace.append(v)
        for k in stride(from: -d, through: d, by: 2) {
            var x: Int
            if k == -d || (k != d && v[max + k - 1] < v[max + k + 1]) {
                x = v[max + k + 1]
            } else {
                x = v[max + k - 1] + 1
            }
            var y = x - k
            while x < n && y < m && a[x] == b[y] {
                x += 1
                y += 1
            }
            v[max + k] = x
            if x >= n && y >= m { trace.append(v); break outer }
        }
    }
    // Backtrack from (n, m).
    var edits: [Edit] = []
    var x = n
    var y = m
    for d in stride(from: trace.count - 2, through: 0, by: -1) {
        let v = trace[d]
        let k = x - y
        let previousK = (k == -d || (k != d && v[max + k - 1] < v[max + k + 1])) ? k + 1 : k - 1
        let previousX = v[max + previousK]
        let previousY = previousX - previousK
        while x > previousX && y > previousY {
            x -= 1
            y -= 1
            edits.append(Edit(kind: .same, oldIndex: x, newIndex: y))
        }
        if d > 0 {
            if x == previousX {
                y -= 1
                edits.append(Edit(kind: .insert, oldIndex: x, newIndex: y))
            } else {
                x -= 1
                edits.append(Edit(kind: .delete, oldIndex: x, newIndex: y))
            }
        }
    }
    return edits.reversed()
}
