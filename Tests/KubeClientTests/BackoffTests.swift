@testable import KubeClient
import Testing

/// A generator that always returns the same value, for jitter at its ends.
private struct FixedRandom: RandomNumberGenerator {
    var value: UInt64
    mutating func next() -> UInt64 { value }
}

@Suite struct BackoffTests {
    @Test func doublesWithinTheUpperHalfOfEachStepUpToTheCap() {
        var low = FixedRandom(value: 0)
        var high = FixedRandom(value: .max)
        var a = Backoff(initial: .milliseconds(200), cap: .seconds(5))
        var b = a
        let lows = (0..<8).map { _ in a.next(using: &low) }
        let highs = (0..<8).map { _ in b.next(using: &high) }
        #expect(lows == [100, 200, 400, 800, 1600, 2500, 2500, 2500].map { Duration.milliseconds($0) })
        #expect(highs == [200, 400, 800, 1600, 3200, 5000, 5000, 5000].map { Duration.milliseconds($0) })
    }

    @Test func retryAfterIsHonouredAndCapped() {
        var random = SystemRandomNumberGenerator()
        var backoff = Backoff(initial: .milliseconds(200), cap: .seconds(30))
        #expect(backoff.next(retryAfter: .seconds(3), using: &random) == .seconds(3))
        #expect(backoff.next(retryAfter: .seconds(600), using: &random) == .seconds(30))
        #expect(backoff.failures == 2)
    }

    @Test func resetStartsAgainFromTheFirstStep() {
        var high = FixedRandom(value: .max)
        var backoff = Backoff(initial: .milliseconds(100), cap: .seconds(30))
        for _ in 0..<5 { _ = backoff.next(using: &high) }
        backoff.reset()
        #expect(backoff.next(using: &high) == .milliseconds(100))
    }

    @Test func hugeFailureCountsDoNotOverflow() {
        var high = FixedRandom(value: .max)
        var backoff = Backoff(initial: .seconds(1), cap: .seconds(30))
        for _ in 0..<200 { _ = backoff.next(using: &high) }
        #expect(backoff.next(using: &high) == .seconds(30))
    }
}

@Suite struct LineSplitterTests {
    /// Feeds `chunks` and returns the lines seen.
    private func lines(_ chunks: [String], stopAt: Int? = nil) -> [String] {
        var splitter = LineSplitter()
        var seen: [String] = []
        for chunk in chunks {
            let bytes = Array(chunk.utf8)
            let more = bytes.withUnsafeBytes { raw in
                splitter.append(raw) { line in
                    seen.append(String(decoding: line, as: UTF8.self))
                    return seen.count != stopAt
                }
            }
            if !more { break }
        }
        return seen
    }

    @Test func eventsSplitAcrossChunksAreJoined() {
        #expect(lines(["{\"a\":1}\n{\"b\"", ":2}\n", "{\"c\":3}", "\n"]) == ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"])
    }

    @Test func blankLinesAreSkippedAndAPartialLastLineIsHeld() {
        #expect(lines(["\n\r\n{\"a\":1}\n  \n{\"b\":"]) == ["{\"a\":1}"])
    }

    @Test func theHandlerCanStop() {
        #expect(lines(["1\n2\n3\n", "4\n"], stopAt: 2) == ["1", "2"])
    }
}

@Suite struct QueryTests {
    @Test func valuesArePercentEncoded() {
        let client = APIClient(connection: ClusterConnection(server: "https://127.0.0.1:1", origin: "test"))
        #expect(client.query([]) == "")
        #expect(client.query([("fieldSelector", "metadata.name=node-a"), ("continue", "eyJ+/=")])
            == "?fieldSelector=metadata.name%3Dnode-a&continue=eyJ%2B%2F%3D")
    }
}
