import KubeModel
import Testing

@Suite struct IPAddressTests {
    @Test("IPv4 text round-trips", arguments: ["0.0.0.0", "10.244.1.10", "255.255.255.255"])
    func v4(_ text: String) throws {
        let ip = try #require(IPAddress(text))
        #expect(ip.family == .v4)
        #expect(ip.description == text)
    }

    @Test("IPv6 text is canonical (RFC 5952)", arguments: [
        ("fd00:10:244:1::a", "fd00:10:244:1::a"),
        ("FD00:0010:0244:0001:0000:0000:0000:000A", "fd00:10:244:1::a"),
        ("::", "::"),
        ("::1", "::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:db8::0:1", "2001:db8::1"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ("::ffff:10.1.2.3", "::ffff:a01:203"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"),
    ])
    func v6(_ pair: (String, String)) throws {
        let ip = try #require(IPAddress(pair.0))
        #expect(ip.family == .v6)
        #expect(ip.description == pair.1)
    }

    @Test("malformed addresses are rejected", arguments: [
        "", "10.0.0", "10.0.0.256", "10.0.0.01", "1.2.3.4.5", "a.b.c.d", "1..2.3", ".1.2.3", "1.2.3.", "00.1.2.3", "1000.1.1.1", "1.2.3.4 ", "+1.2.3.4", ":::", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "fe80::1%eth0",
    ])
    func malformed(_ text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test("addresses sort numerically, IPv4 before IPv6")
    func order() throws {
        let texts = ["10.0.0.10", "10.0.0.9", "::1", "9.255.255.255"]
        let sorted = texts.compactMap { IPAddress($0) }.sorted().map(\.description)
        #expect(sorted == ["9.255.255.255", "10.0.0.9", "10.0.0.10", "::1"])
    }

    @Test("CIDR parsing normalises host bits and checks prefixes")
    func cidr() throws {
        #expect(CIDR("10.1.2.3/16")?.description == "10.1.0.0/16")
        #expect(CIDR("0.0.0.0/0")?.prefix == 0)
        #expect(CIDR("2001:db8::1/48")?.description == "2001:db8::/48")
        #expect(CIDR("10.0.0.0/33") == nil)
        #expect(CIDR("10.0.0.0") == nil)
        #expect(CIDR("10.0.0.0/") == nil)
        #expect(CIDR("::/129") == nil)
        let block = try #require(CIDR("172.16.0.0/12"))
        #expect(block.contains(try #require(IPAddress("172.31.255.255"))))
        #expect(!block.contains(try #require(IPAddress("172.32.0.0"))))
        #expect(!block.contains(try #require(IPAddress("::ffff:172.16.0.1"))))
        #expect(block.contains(try #require(CIDR("172.16.5.0/24"))))
        let small = try #require(CIDR("172.16.5.0/24"))
        #expect(!small.contains(block))
        #expect(try #require(CIDR("0.0.0.0/0")).contains(try #require(IPAddress("203.0.113.9"))))
        #expect(try #require(CIDR("::/0")).contains(try #require(IPAddress("2001:db8::9"))))
    }
}
