// JSONReader: a strict JSON reader over bytes that builds only what it is asked for.
//
// Design note: a cluster export is tens of megabytes of which Picket keeps a few percent, so the
// reader never builds a document tree. Callers walk objects and arrays with closures, read the
// scalars they keep, and `skipValue()` everything else. Skipping still validates: the whole input
// must be RFC 8259 JSON (UTF-8 checked inside strings, escapes and surrogate pairs checked,
// numbers checked by the grammar), so a skipped field can never hide a broken file. Nesting is
// bounded (`maxDepth`) and the skipper is iterative, so no input can exhaust the stack. Syntax
// errors throw `JSONSyntaxError`; type errors in kept fields are the caller's business
// (`JSONManifests.swift` records them per object and keeps reading).

/// Invalid JSON: where (byte offset, line and column) and why.
public struct JSONSyntaxError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Byte offset of the problem in the input.
    public var offset: Int
    /// 1-based line of `offset`.
    public var line: Int
    /// 1-based column (in bytes) of `offset`.
    public var column: Int
    /// What is wrong.
    public var reason: String

    public var description: String { "invalid JSON at line \(line), column \(column): \(reason)" }
}

/// An object key: the input's bytes when the key has no escapes, else the decoded text.
struct JSONKey {
    /// The key's bytes in the input (unescaped keys only).
    var raw: UnsafeBufferPointer<UInt8>
    /// The decoded key, for keys with escapes.
    var decoded: String?

    /// Whether the key is `name`.
    @inline(__always)
    func `is`(_ name: StaticString) -> Bool {
        if let decoded { return decoded == name.description }
        guard raw.count == name.utf8CodeUnitCount else { return false }
        return JSONReader.equal(raw.baseAddress!, name.utf8Start, count: raw.count)
    }

    /// The key as a String.
    var string: String { decoded ?? String(decoding: raw, as: UTF8.self) }
}

/// The JSON type of the next value.
enum JSONType: Equatable {
    case object, array, string, number, bool, null
}

/// A cursor over JSON bytes. The bytes must outlive the reader.
struct JSONReader {
    /// The deepest nesting of objects and arrays accepted.
    static let maxDepth = 512

    /// A valid address for empty input (never read: `count` is 0).
    nonisolated(unsafe) private static let empty: UnsafeMutablePointer<UInt8> = .allocate(capacity: 1)

    /// The input.
    let bytes: UnsafePointer<UInt8>
    /// Its length.
    let count: Int
    /// The next byte to read.
    var position = 0
    /// Objects and arrays open around `position`.
    var depth = 0
    /// Where the value being decoded is, from the object's root (for field failures).
    var path: [JSONPathItem] = []
    /// The first field failure (wrong type, missing field) since the last `section`.
    var fieldFailure: FieldError?

    /// A reader over `buffer`.
    init(_ buffer: UnsafeRawBufferPointer) {
        if let base = buffer.baseAddress, buffer.count > 0 {
            bytes = base.assumingMemoryBound(to: UInt8.self)
            count = buffer.count
        } else {
            bytes = UnsafePointer(Self.empty)
            count = 0
        }
    }

    /// Whether `count` bytes at `a` and `b` are equal (keys and literals are short).
    @inline(__always)
    static func equal(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, count: Int) -> Bool {
        for i in 0..<count where a[i] != b[i] { return false }
        return true
    }

    // MARK: errors

    /// A syntax error at `offset` (default: the current position).
    func syntaxError(_ reason: String, at offset: Int? = nil) -> JSONSyntaxError {
        let offset = min(offset ?? position, count)
        var line = 1
        var lineStart = 0
        for i in 0..<offset where bytes[i] == UInt8(ascii: "\n") {
            line += 1
            lineStart = i + 1
        }
        return JSONSyntaxError(offset: offset, line: line, column: offset - lineStart + 1, reason: reason)
    }

    private func unexpected(_ expected: String) -> JSONSyntaxError {
        guard position < count else { return syntaxError("unexpected end of input, expected \(expected)") }
        let byte = bytes[position]
        let shown = byte >= 0x20 && byte < 0x7F ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
        return syntaxError("unexpected \(shown), expected \(expected)")
    }

    // MARK: structure

    /// Skips spaces, tabs, carriage returns and newlines.
    @inline(__always)
    mutating func skipWhitespace() {
        while position < count {
            let b = bytes[position]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            position += 1
        }
    }

    /// Whether only whitespace is left.
    mutating func isAtEnd() -> Bool {
        skipWhitespace()
        return position >= count
    }

    /// The type of the next value (after whitespace).
    mutating func peekType() throws(JSONSyntaxError) -> JSONType {
        skipWhitespace()
        guard position < count else { throw unexpected("a value") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        default: throw unexpected("a value")
        }
    }

    @inline(__always)
    private mutating func expect(_ byte: UInt8, _ what: String) throws(JSONSyntaxError) {
        skipWhitespace()
        guard position < count, bytes[position] == byte else { throw unexpected(what) }
        position += 1
    }

    private mutating func enter() throws(JSONSyntaxError) {
        depth += 1
        if depth > Self.maxDepth { throw syntaxError("nesting deeper than \(Self.maxDepth) levels") }
    }

    /// Reads an object, calling `member` for each key with the reader at its value; `member`
    /// must consume exactly that value. Later duplicate keys are passed on like any other.
    @inline(__always)
    mutating func readObject(_ member: (inout JSONReader, JSONKey) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) {
        try expect(UInt8(ascii: "{"), "'{'")
        try enter()
        skipWhitespace()
        if position < count && bytes[position] == UInt8(ascii: "}") {
            position += 1
            depth -= 1
            return
        }
        while true {
            skipWhitespace()
            guard position < count, bytes[position] == UInt8(ascii: "\"") else { throw unexpected("a string key") }
            let key = try readKey()
            try expect(UInt8(ascii: ":"), "':'")
            skipWhitespace()
            try member(&self, key)
            skipWhitespace()
            guard position < count else { throw syntaxError("unexpected end of input, expected ',' or '}'") }
            let b = bytes[position]
            position += 1
            if b == UInt8(ascii: "}") { break }
            guard b == UInt8(ascii: ",") else { position -= 1; throw unexpected("',' or '}'") }
        }
        depth -= 1
    }

    /// Reads an array, calling `element` with each index and the reader at the element; `element`
    /// must consume exactly that value.
    @inline(__always)
    mutating func readArray(_ element: (inout JSONReader, Int) throws(JSONSyntaxError) -> Void) throws(JSONSyntaxError) {
        try expect(UInt8(ascii: "["), "'['")
        try enter()
        skipWhitespace()
        if position < count && bytes[position] == UInt8(ascii: "]") {
            position += 1
            depth -= 1
            return
        }
        var index = 0
        while true {
            skipWhitespace()
            try element(&self, index)
            index += 1
            skipWhitespace()
            guard position < count else { throw syntaxError("unexpected end of input, expected ',' or ']'") }
            let b = bytes[position]
            position += 1
            if b == UInt8(ascii: "]") { break }
            guard b == UInt8(ascii: ",") else { position -= 1; throw unexpected("',' or ']'") }
        }
        depth -= 1
    }

    // MARK: skipping

    /// Skips one value of any type, validating it. Iterative: nesting costs one bit per level.
    mutating func skipValue() throws(JSONSyntaxError) {
        // Bit i of `kinds` says whether level i (relative to the start) is an object.
        var kinds = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var level = 0
        let base = depth
        func isObject(_ kinds: inout (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64), _ level: Int) -> Bool {
            withUnsafeBytes(of: &kinds) { $0.load(fromByteOffset: (level >> 6) * 8, as: UInt64.self) } >> UInt64(level & 63) & 1 == 1
        }
        func set(_ kinds: inout (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64), _ level: Int, _ object: Bool) {
            withUnsafeMutableBytes(of: &kinds) { raw in
                var word = raw.load(fromByteOffset: (level >> 6) * 8, as: UInt64.self)
                let bit = UInt64(1) << UInt64(level & 63)
                word = object ? word | bit : word & ~bit
                raw.storeBytes(of: word, toByteOffset: (level >> 6) * 8, as: UInt64.self)
            }
        }
        while true {
            // At a value.
            skipWhitespace()
            guard position < count else { throw unexpected("a value") }
            switch bytes[position] {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let object = bytes[position] == UInt8(ascii: "{")
                position += 1
                if base + level + 1 > Self.maxDepth { throw syntaxError("nesting deeper than \(Self.maxDepth) levels", at: position - 1) }
                set(&kinds, level, object)
                level += 1
                skipWhitespace()
                let close = object ? UInt8(ascii: "}") : UInt8(ascii: "]")
                if position < count && bytes[position] == close {
                    position += 1
                    level -= 1
                    break  // an empty container is a complete value
                }
                if object { try skipKeyAndColon() }
                continue
            case UInt8(ascii: "\""):
                try scanString()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                try scanNumber()
            case UInt8(ascii: "t"):
                try literal("true")
            case UInt8(ascii: "f"):
                try literal("false")
            case UInt8(ascii: "n"):
                try literal("null")
            default:
                throw unexpected("a value")
            }
            // After a complete value: close containers or move to the next element.
            while true {
                if level == 0 { return }
                skipWhitespace()
                guard position < count else { throw unexpected("',' or a closing bracket") }
                let object = isObject(&kinds, level - 1)
                let b = bytes[position]
                if b == UInt8(ascii: ",") {
                    position += 1
                    if object { try skipKeyAndColon() }
                    break
                }
                guard b == (object ? UInt8(ascii: "}") : UInt8(ascii: "]")) else {
                    throw unexpected(object ? "',' or '}'" : "',' or ']'")
                }
                position += 1
                level -= 1
            }
        }
    }

    private mutating func skipKeyAndColon() throws(JSONSyntaxError) {
        skipWhitespace()
        guard position < count, bytes[position] == UInt8(ascii: "\"") else { throw unexpected("a string key") }
        try scanString()
        try expect(UInt8(ascii: ":"), "':'")
    }

    private mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let n = word.utf8CodeUnitCount
        guard position + n <= count, Self.equal(bytes + position, word.utf8Start, count: n) else {
            throw syntaxError("invalid literal, expected \(word)")
        }
        position += n
    }

    // MARK: scalars

    /// Reads `true` or `false`.
    mutating func readBool() throws(JSONSyntaxError) -> Bool {
        skipWhitespace()
        if position < count && bytes[position] == UInt8(ascii: "t") {
            try literal("true")
            return true
        }
        try literal("false")
        return false
    }

    /// Reads `null`.
    mutating func readNull() throws(JSONSyntaxError) {
        skipWhitespace()
        try literal("null")
    }

    /// Reads a number; returns its text and whether it is an integer (no fraction, no exponent).
    mutating func readNumber() throws(JSONSyntaxError) -> (text: UnsafeBufferPointer<UInt8>, isInteger: Bool) {
        skipWhitespace()
        let start = position
        let isInteger = try scanNumber()
        return (UnsafeBufferPointer(start: bytes + start, count: position - start), isInteger)
    }

    /// Scans a number by the JSON grammar; returns whether it is an integer.
    @discardableResult
    private mutating func scanNumber() throws(JSONSyntaxError) -> Bool {
        @inline(__always) func isDigit(_ b: UInt8) -> Bool { b &- UInt8(ascii: "0") < 10 }
        var integer = true
        if position < count && bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < count, isDigit(bytes[position]) else { throw syntaxError("invalid number: expected a digit") }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if position < count && isDigit(bytes[position]) { throw syntaxError("invalid number: leading zero") }
        } else {
            while position < count && isDigit(bytes[position]) { position += 1 }
        }
        if position < count && bytes[position] == UInt8(ascii: ".") {
            integer = false
            position += 1
            guard position < count, isDigit(bytes[position]) else { throw syntaxError("invalid number: expected a digit after '.'") }
            while position < count && isDigit(bytes[position]) { position += 1 }
        }
        if position < count && (bytes[position] | 0x20) == UInt8(ascii: "e") {
            integer = false
            position += 1
            if position < count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) { position += 1 }
            guard position < count, isDigit(bytes[position]) else { throw syntaxError("invalid number: expected a digit in the exponent") }
            while position < count && isDigit(bytes[position]) { position += 1 }
        }
        return integer
    }

    /// Reads a string.
    mutating func readString() throws(JSONSyntaxError) -> String {
        skipWhitespace()
        let start = position
        guard position < count, bytes[position] == UInt8(ascii: "\"") else { throw unexpected("a string") }
        let escaped = try scanString()
        if !escaped {
            return String(decoding: UnsafeBufferPointer(start: bytes + start + 1, count: position - start - 2), as: UTF8.self)
        }
        return unescape(from: start + 1, to: position - 1)
    }

    private mutating func readKey() throws(JSONSyntaxError) -> JSONKey {
        let start = position
        let escaped = try scanString()
        let raw = UnsafeBufferPointer(start: bytes + start + 1, count: position - start - 2)
        return JSONKey(raw: raw, decoded: escaped ? unescape(from: start + 1, to: position - 1) : nil)
    }

    /// Scans a string starting at its opening quote, validating escapes and UTF-8; leaves the
    /// position after the closing quote and returns whether it had escapes.
    @discardableResult
    private mutating func scanString() throws(JSONSyntaxError) -> Bool {
        position += 1  // the opening quote
        var escaped = false
        while true {
            // Fast path: eight plain ASCII bytes at a time (no quote, backslash, control or high bit).
            while position + 8 <= count {
                // Little-endian order: the first byte is the lowest (for trailingZeroBitCount below).
                let w = UInt64(littleEndian: UnsafeRawPointer(bytes + position).loadUnaligned(as: UInt64.self))
                let ones: UInt64 = 0x0101_0101_0101_0101
                let high: UInt64 = 0x8080_8080_8080_8080
                let quote = w ^ (ones &* 0x22)
                let slash = w ^ (ones &* 0x5C)
                let special = (((quote &- ones) & ~quote) | ((slash &- ones) & ~slash) | (w &- ones &* 0x20) | w) & high
                if special != 0 {
                    // Borrows only flag bytes after a special one, so the lowest flag is exact.
                    position += special.trailingZeroBitCount >> 3
                    break
                }
                position += 8
            }
            guard position < count else { throw syntaxError("unexpected end of input inside a string") }
            let b = bytes[position]
            if b == UInt8(ascii: "\"") {
                position += 1
                return escaped
            } else if b == UInt8(ascii: "\\") {
                escaped = true
                try scanEscape()
            } else if b < 0x20 {
                throw syntaxError("control character 0x\(String(b, radix: 16)) in a string (must be escaped)")
            } else if b < 0x80 {
                position += 1
            } else {
                try scanUTF8()
            }
        }
    }

    /// Validates one escape sequence at the backslash.
    private mutating func scanEscape() throws(JSONSyntaxError) {
        position += 1
        guard position < count else { throw syntaxError("unexpected end of input inside a string") }
        switch bytes[position] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
            UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            position += 1
        case UInt8(ascii: "u"):
            let unit = try hex4(at: position + 1)
            position += 5
            if unit >= 0xD800 && unit < 0xDC00 {
                guard position + 1 < count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                    throw syntaxError("unpaired surrogate \\u\(String(unit, radix: 16, uppercase: true)) in a string")
                }
                let low = try hex4(at: position + 2)
                guard low >= 0xDC00 && low < 0xE000 else {
                    throw syntaxError("unpaired surrogate \\u\(String(unit, radix: 16, uppercase: true)) in a string")
                }
                position += 6
            } else if unit >= 0xDC00 && unit < 0xE000 {
                throw syntaxError("unpaired surrogate \\u\(String(unit, radix: 16, uppercase: true)) in a string")
            }
        default:
            throw syntaxError("invalid escape in a string")
        }
    }

    private func hex4(at offset: Int) throws(JSONSyntaxError) -> UInt32 {
        guard offset + 4 <= count else { throw syntaxError("unexpected end of input in a \\u escape") }
        var value: UInt32 = 0
        for i in 0..<4 {
            let b = bytes[offset + i]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw syntaxError("invalid \\u escape (expected 4 hex digits)", at: offset + i)
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// Validates one multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
    private mutating func scanUTF8() throws(JSONSyntaxError) {
        let b0 = bytes[position]
        let length: Int
        var lower: UInt8 = 0x80
        var upper: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: throw syntaxError("invalid UTF-8 in a string")
        }
        guard position + length <= count else { throw syntaxError("invalid UTF-8 in a string (truncated sequence)") }
        let b1 = bytes[position + 1]
        guard b1 >= lower && b1 <= upper else { throw syntaxError("invalid UTF-8 in a string") }
        for i in 2..<max(length, 2) where bytes[position + i] & 0xC0 != 0x80 {
            throw syntaxError("invalid UTF-8 in a string")
        }
        position += length
    }

    /// Decodes a validated string body with escapes.
    private func unescape(from start: Int, to end: Int) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(end - start)
        var i = start
        func hex(_ at: Int) -> UInt32 {
            var v: UInt32 = 0
            for k in 0..<4 {
                let b = bytes[at + k]
                v = v << 4 | UInt32(b <= UInt8(ascii: "9") ? b - UInt8(ascii: "0") : (b | 0x20) - UInt8(ascii: "a") + 10)
            }
            return v
        }
        while i < end {
            let b = bytes[i]
            guard b == UInt8(ascii: "\\") else {
                out.append(b)
                i += 1
                continue
            }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex(i)
                i += 4
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (hex(i + 2) - 0xDC00)
                    i += 6
                }
                out.append(contentsOf: UTF8.encode(Unicode.Scalar(scalar)!)!)
            default: out.append(e)  // " \ /
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
