@testable import picket
import Testing

@Suite struct GoDurationTests {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)), ("5s", .seconds(5)), ("5m", .seconds(300)), ("1h30m", .seconds(5400)),
        ("1.5h", .seconds(5400)), ("0", .zero), ("250us", .microseconds(250)), ("1m0.5s", .milliseconds(60_500)), ("10ns", .nanoseconds(10)),
    ])
    func parses(_ text: String, _ expected: Duration) {
        #expect(GoDuration.parse(text) == expected)
    }

    @Test(arguments: ["", "5", "5x", "-5s", "s", "1.2.3s", "ms", "1h 30m", ".s", "1e3s"])
    func refuses(_ text: String) {
        #expect(GoDuration.parse(text) == nil)
    }
}
