// API responses: list pages, watch events and Status bodies, projected straight from JSON bytes.
//
// Design note: an informer lists (`GET /api/v1/pods?limit=500`, then `continue`) and watches
// (`?watch=1&resourceVersion=...&allowWatchBookmarks=true`, one JSON object per line). Both are
// read with the manifests' JSON reader and object code (`JSONManifests.swift`), so a list page is
// decoded in the same single pass at the same speed as a file, and every object is admitted by
// the same checks (`ManifestSet.admission(of:source:)`). The differences are those of the API:
// typed lists' items carry neither kind nor apiVersion (both come from the list), every object
// carries metadata.resourceVersion (and uid), Nodes are read, and what cannot be used is an
// error (`APIDecodeError`) rather than a skipped document:
//
// - a list page: the envelope (kind, metadata.resourceVersion, continue, remainingItemCount)
//   must be right, or the whole page is refused; an item that cannot be decoded (a type error in
//   a kept field, no name, another kind) is left out with an issue in `ListPage.issues`; an item
//   that decodes but is invalid is kept with its issues in `APIItem.issues`. Items are decoded as
//   they come once the list's kind is known (the API server writes kind first). Items before
//   kind (kubectl sorts keys) are decoded as the kinds they name, as the file path does, and
//   kept if every item named the list's item kind and none failed; otherwise they are read
//   again once the kind is known (a second pass over them, in that order only).
// - a watch event: anything wrong with it is an `APIDecodeError` (the informer re-lists), an
//   invalid object is kept with its issues. `object` before `type` is skipped and read again.

/// An object from an API response, as admitted: namespaces, pods and nodes as decoded (with
/// their validation issues beside them), NetworkPolicies validated (`Policy`, as `ManifestSet`
/// holds them).
public enum APIObject: Hashable, Sendable {
    /// A v1 Namespace.
    case namespace(Namespace)
    /// A v1 Pod.
    case pod(Pod)
    /// A networking.k8s.io/v1 NetworkPolicy, validated.
    case networkPolicy(Policy)
    /// A v1 Node.
    case node(Node)

    /// The object's kind: `Namespace`, `Pod`, `NetworkPolicy` or `Node`.
    public var kind: String {
        switch self {
        case .namespace: "Namespace"
        case .pod: "Pod"
        case .networkPolicy: "NetworkPolicy"
        case .node: "Node"
        }
    }

    /// metadata.name.
    public var name: String {
        switch self {
        case .namespace(let namespace): namespace.name
        case .pod(let pod): pod.key.name
        case .networkPolicy(let policy): policy.key.name
        case .node(let node): node.name
        }
    }

    /// metadata.namespace of a namespaced object (Pod, NetworkPolicy; `default` when absent);
    /// nil for cluster-scoped ones (Namespace, Node).
    public var namespace: String? {
        switch self {
        case .namespace, .node: nil
        case .pod(let pod): pod.key.namespace
        case .networkPolicy(let policy): policy.key.namespace
        }
    }
}

/// One object of a list page or a watch event, with what the informer needs besides it.
public struct APIItem: Hashable, Sendable {
    /// The object, admitted.
    public var object: APIObject
    /// metadata.resourceVersion. Always non-empty in watch events; in list items empty when
    /// the item had none (the list's own resourceVersion is the one to watch from).
    public var resourceVersion: String
    /// metadata.uid, when present.
    public var uid: String?
    /// What is wrong with the object (validation errors, notes), in the order `ManifestSet.admit`
    /// would report them; the object is kept whatever they say.
    public var issues: [ManifestIssue]

    /// Creates an item.
    public init(object: APIObject, resourceVersion: String, uid: String? = nil, issues: [ManifestIssue] = []) {
        self.object = object
        self.resourceVersion = resourceVersion
        self.uid = uid
        self.issues = issues
    }
}

/// A Kubernetes `Status` body: what the API server says about a failed request (401, 403, 404,
/// 410 "too old resource version", 429, 500) or in a watch ERROR event.
public struct APIStatus: Error, Sendable, Hashable, CustomStringConvertible {
    /// code: the HTTP status code (0 when absent).
    public var code: Int
    /// reason: `Unauthorized`, `Forbidden`, `Expired`, `Gone`, `TooManyRequests`... ("" when absent).
    public var reason: String
    /// message: the human-readable explanation ("" when absent).
    public var message: String
    /// details.retryAfterSeconds, when the server suggests when to retry (429, some 5xx).
    public var retryAfterSeconds: Int?

    /// Creates a status.
    public init(code: Int, reason: String, message: String, retryAfterSeconds: Int? = nil) {
        self.code = code
        self.reason = reason
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// `410 Expired: too old resource version: 1 (2)`, escaped to one printable line.
    public var description: String {
        var text = "\(code)"
        if !reason.isEmpty { text += " \(reason)" }
        if !message.isEmpty { text += ": \(message)" }
        return ManifestIssue.printable(text)
    }
}

/// One page of a list response (`PodList`, `NamespaceList`, `NetworkPolicyList`, `NodeList`).
public struct ListPage: Hashable, Sendable {
    /// The list's kind, e.g. `PodList`.
    public var kind: String
    /// metadata.resourceVersion: where to start watching once the last page is read. Never empty.
    public var resourceVersion: String
    /// metadata.continue: the token for the next page; nil on the last page.
    public var continueToken: String?
    /// metadata.remainingItemCount: how many items later pages hold, when the server says.
    public var remainingItemCount: Int?
    /// The items that decoded, in list order (invalid ones included, with their issues).
    public var items: [APIItem]
    /// The items left out (not an object, a type error in a kept field, no name, another kind),
    /// one error each, in list order.
    public var issues: [ManifestIssue]

    /// Creates a page.
    public init(
        kind: String, resourceVersion: String, continueToken: String? = nil, remainingItemCount: Int? = nil,
        items: [APIItem] = [], issues: [ManifestIssue] = []
    ) {
        self.kind = kind
        self.resourceVersion = resourceVersion
        self.continueToken = continueToken
        self.remainingItemCount = remainingItemCount
        self.items = items
        self.issues = issues
    }
}

/// One event of a watch stream.
public enum WatchEvent: Hashable, Sendable {
    /// An object was created (or is listed at the start of a watch).
    case added(APIItem)
    /// An object changed.
    case modified(APIItem)
    /// An object was deleted; the item is its last state.
    case deleted(APIItem)
    /// Nothing changed up to `resourceVersion`: resume from there after a reconnect.
    case bookmark(resourceVersion: String)
    /// The server ended the watch with a Status (410 Expired: the resourceVersion is too old,
    /// re-list).
    case error(APIStatus)
}

/// A list page or watch event that cannot be used: what is wrong, in which input (`source`).
public struct APIDecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of problem it is, for callers that branch on it (extensible: match with `==`).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case syntax, missingField, wrongType, wrongKind, unknownEventType, undecodableObject, status
        }

        private var value: Value

        /// The bytes are not one JSON value (truncated, malformed, data after it): `syntax` says where.
        public static let syntax = Code(value: .syntax)
        /// A required field is absent: kind, metadata.resourceVersion, a watch event's type or object.
        public static let missingField = Code(value: .missingField)
        /// A field of the envelope has the wrong JSON type (`metadata.continue: 5`).
        public static let wrongType = Code(value: .wrongType)
        /// A list or object of a kind Picket does not read, or not the kind expected.
        public static let wrongKind = Code(value: .wrongKind)
        /// A watch event type other than ADDED, MODIFIED, DELETED, BOOKMARK, ERROR.
        public static let unknownEventType = Code(value: .unknownEventType)
        /// A watch event's object does not decode (a type error in a kept field, no name).
        public static let undecodableObject = Code(value: .undecodableObject)
        /// The body is a `Status` (an error response), not a list: `status` holds it.
        public static let status = Code(value: .status)

        public var description: String {
            switch value {
            case .syntax: "syntax"
            case .missingField: "missing field"
            case .wrongType: "wrong type"
            case .wrongKind: "wrong kind"
            case .unknownEventType: "unknown event type"
            case .undecodableObject: "undecodable object"
            case .status: "status"
            }
        }
    }

    /// What kind of problem.
    public var code: Code
    /// The input, as the caller named it (e.g. `GET /api/v1/pods`, `watch pods`).
    public var source: String
    /// The object, as `Kind namespace/name`, when the problem is in one.
    public var object: String?
    /// The field path, when known (`metadata.resourceVersion`, `spec.containers[0].ports[0].containerPort`).
    public var field: String?
    /// What is wrong.
    public var message: String
    /// The syntax error, for `.syntax` (its `offset` is the byte where reading stopped).
    public var syntax: JSONSyntaxError?
    /// The Status, for `.status`.
    public var status: APIStatus?

    /// Creates an error.
    public init(
        code: Code, source: String, object: String? = nil, field: String? = nil, message: String,
        syntax: JSONSyntaxError? = nil, status: APIStatus? = nil
    ) {
        self.code = code
        self.source = source
        self.object = object
        self.field = field
        self.message = message
        self.syntax = syntax
        self.status = status
    }

    /// An error for a syntax error.
    init(_ syntax: JSONSyntaxError, source: String) {
        self.init(
            code: .syntax, source: source,
            message: "does not parse: invalid JSON at byte \(syntax.offset) (line \(syntax.line), column \(syntax.column)): \(syntax.reason)",
            syntax: syntax)
    }

    /// An error for an issue about an object.
    init(_ code: Code, _ issue: ManifestIssue) {
        self.init(code: code, source: issue.source, object: issue.object, field: issue.field, message: issue.message)
    }

    /// One line: `source: object: field: message`, escaped as `ManifestIssue` lines are.
    public var description: String {
        ManifestIssue.printable([source, object, field].compactMap { $0 }.joined(separator: ": ") + ": \(message)")
    }
}

/// Decodes Kubernetes API responses (list pages, watch events, Status bodies) into admitted
/// objects. Pure: bytes in, values out; the caller owns I/O and framing.
public enum APIDecoder {
    /// Decodes a list response (`PodList`, `NamespaceList`, `NetworkPolicyList`, `NodeList`, or a
    /// `List` whose items name their kinds). Items of typed lists carry no kind: they are read as
    /// the list's. Throws when the page cannot be used (not JSON, a Status, no kind or of another
    /// kind, no metadata.resourceVersion, an envelope field of the wrong type); items that cannot
    /// be decoded are left out with an issue in `ListPage.issues`.
    public static func decodeList(_ bytes: UnsafeRawBufferPointer, source: String) throws(APIDecodeError) -> ListPage {
        var reader = JSONReader(bytes)
        let outcome: Result<ListPage, APIDecodeError>
        do {
            outcome = try reader.listPage(source: source)
        } catch {
            throw APIDecodeError(error, source: source)
        }
        if case .failure(let error) = outcome, error.code == .status, error.status == nil {
            // Re-read as a Status, to say what the server said.
            if let status = decodeStatus(bytes) {
                throw APIDecodeError(code: .status, source: source, message: "is a Status, not a list: \(status)", status: status)
            }
        }
        return try outcome.get()
    }

    /// Decodes one watch event: one line of a watch stream, `{"type":"ADDED","object":{...}}`.
    /// ADDED, MODIFIED and DELETED objects name their kind, which must be one Picket reads, and
    /// must carry metadata.resourceVersion; BOOKMARK objects carry only
    /// metadata.resourceVersion; ERROR objects are a Status. Throws for anything else, and for an
    /// object that does not decode; an invalid object is returned with its issues.
    public static func decodeWatchEvent(_ bytes: UnsafeRawBufferPointer, source: String) throws(APIDecodeError) -> WatchEvent {
        var reader = JSONReader(bytes)
        let outcome: Result<WatchEvent, APIDecodeError>
        do {
            outcome = try reader.watchEvent(source: source)
        } catch {
            throw APIDecodeError(error, source: source)
        }
        return try outcome.get()
    }

    /// Decodes a Status body (the JSON of an error response: 401, 403, 410...); nil if the bytes
    /// are not one JSON object of kind `Status`. Fields of the wrong type read as absent.
    public static func decodeStatus(_ bytes: UnsafeRawBufferPointer) -> APIStatus? {
        var reader = JSONReader(bytes)
        do throws(JSONSyntaxError) {
            guard try reader.peekType() == .object else { return nil }
            let (kind, status) = try reader.status()
            guard reader.isAtEnd(), kind == "Status" else { return nil }
            return status
        } catch {
            // Not JSON, so not a Status: the caller reports the HTTP status and the raw body.
            return nil
        }
    }

    /// The kind of the items of a list kind (`PodList` -> `Pod`), nil for `List`; `.other` when
    /// the list is not one Picket reads.
    static func itemKind(ofList kind: String, apiVersion: String?) -> (name: String?, kind: ManifestDecoder.Kind) {
        guard kind != "List" else { return (nil, .other) }
        guard kind.hasSuffix("List") else { return (nil, .other) }
        let item = String(kind.dropLast(4))
        return (item, classify(kind: item, apiVersion: apiVersion))
    }

    /// What a kind and apiVersion name; without an apiVersion, by kind alone (API list items
    /// inherit the list's, which may be unknown when they are read).
    static func classify(kind: String, apiVersion: String?) -> ManifestDecoder.Kind {
        let version = apiVersion.flatMap { $0.isEmpty ? nil : $0 } ?? (kind == "NetworkPolicy" ? "networking.k8s.io/v1" : "v1")
        return ManifestDecoder.classify(kind: kind, apiVersion: version)
    }
}

// MARK: - reading

/// What decoding one object of an API response gave: an item, or why it cannot be one.
enum APIObjectOutcome {
    case item(APIItem)
    /// The object cannot be used: `code` is `.undecodableObject`, `.missingField` (no kind) or
    /// `.wrongKind`.
    case failure(APIDecodeError.Code, ManifestIssue)
}

extension JSONReader {
    /// Decodes the object at the position as an API object: its own kind, else `inferredKind`
    /// (the typed list's), which must classify as `expected` when that is set.
    mutating func decodeAPIObject(
        location: JSONLocation, inferredKind: String?, inferredAPIVersion: String?, expected: ManifestDecoder.Kind?,
        source: String
    ) throws(JSONSyntaxError) -> APIObjectOutcome {
        guard try peekType() == .object else {
            try skipValue()
            return .failure(.undecodableObject, ManifestIssue(
                severity: .error, source: source, object: location.description, message: "is not an object (a mapping)"))
        }
        var parts = try readObjectParts(inferredKind: inferredKind, forAPI: true) { r, _ throws(JSONSyntaxError) in try r.skipValue() }
        guard let kind = parts.kind ?? inferredKind else {
            return .failure(.missingField, ManifestIssue(
                severity: .error, source: source, object: location.description, field: "kind", message: "is missing"))
        }
        try rereadSections(of: &parts, as: kind)
        let object = parts.objectName(kind: kind, location: location)
        let apiVersion = parts.apiVersion ?? inferredAPIVersion
        let classified = APIDecoder.classify(kind: kind, apiVersion: apiVersion)
        if classified == .other || (expected != nil && classified != expected) {
            let written = kind + (apiVersion.map { " (apiVersion \($0))" } ?? "")
            let wanted = expected == nil ? "Namespace, Pod, NetworkPolicy (networking.k8s.io) or Node" : inferredKind ?? ""
            return .failure(.wrongKind, ManifestIssue(
                severity: .error, source: source, object: object, field: "kind", message: "is \(written), expected \(wanted)"))
        }
        var notes: [ManifestIssue] = []
        if classified == .networkPolicy, let note = ManifestDecoder.apiVersionNote(apiVersion ?? "", source: source, object: object) {
            notes.append(note)
        }
        switch parts.assemble(as: classified) {
        case .success(let decoded)?:
            let (admitted, issues) = ManifestSet.admission(of: decoded, source: source)
            return .item(APIItem(
                object: admitted, resourceVersion: parts.meta.resourceVersion ?? "", uid: parts.meta.uid,
                issues: notes.isEmpty ? issues : notes + issues))
        case .failure(let failure)?:
            return .failure(.undecodableObject, ManifestIssue(
                severity: .error, source: source, object: object, field: failure.field, message: failure.reason))
        case nil:
            preconditionFailure("every API kind assembles")
        }
    }

    /// A string where the envelope needs one: nil and `failure` set for another type; null is absent.
    private mutating func envelopeString(_ field: String, source: String, failure: inout APIDecodeError?) throws(JSONSyntaxError) -> String? {
        switch try peekType() {
        case .string: return try readString()
        case .null: try readNull(); return nil
        default:
            if failure == nil {
                failure = APIDecodeError(code: .wrongType, source: source, field: field, message: "has the wrong type, expected String")
            }
            try skipValue()
            return nil
        }
    }

    /// Reads a list page; syntax errors throw, everything else is the result.
    mutating func listPage(source: String) throws(JSONSyntaxError) -> Result<ListPage, APIDecodeError> {
        guard try peekType() == .object else {
            try skipValue()
            guard isAtEnd() else { throw syntaxError("unexpected data after the JSON value") }
            return .failure(APIDecodeError(code: .wrongType, source: source, message: "is not a JSON object"))
        }
        var failure: APIDecodeError?
        var kind: String?
        var apiVersion: String?
        var resourceVersion: String?
        var continueToken: String?
        var remainingItemCount: Int?
        var itemsOffset: Int?
        /// How `items` was read.
        enum ItemsRead {
            /// Not read (skipped, or not seen).
            case no
            /// As items of a list of this kind.
            case asItemsOf(String)
            /// Before the list's kind was known, each item as the kind it names, with the list's
            /// apiVersion as known then; usable only if nothing depended on the list's kind.
            case speculatively(apiVersion: String?, doubtful: Bool)
        }
        var itemsRead = ItemsRead.no
        var items: [APIItem] = []
        var issues: [ManifestIssue] = []

        func readItems(_ r: inout JSONReader, listKind: String?) throws(JSONSyntaxError) {
            items = []
            issues = []
            let (itemKind, expected) = listKind.map { APIDecoder.itemKind(ofList: $0, apiVersion: apiVersion) } ?? (nil, .other)
            var doubtful = false
            itemsRead = listKind.map { .asItemsOf($0) } ?? .speculatively(apiVersion: apiVersion, doubtful: false)
            switch try r.peekType() {
            case .array: break
            case .null: return try r.readNull()
            default:
                if failure == nil {
                    failure = APIDecodeError(code: .wrongType, source: source, field: "items", message: "has the wrong type, expected Sequence")
                }
                return try r.skipValue()
            }
            let itemAPIVersion = listKind == nil || itemKind != nil ? apiVersion : nil
            try r.readArray { r, i throws(JSONSyntaxError) in
                switch try r.decodeAPIObject(
                    location: JSONLocation(parent: "list", item: i), inferredKind: itemKind, inferredAPIVersion: itemAPIVersion,
                    expected: itemKind == nil ? nil : expected, source: source)
                {
                case .item(let item):
                    items.append(item)
                case .failure(_, let issue):
                    // Without the list's kind, a failed item might have failed otherwise (no kind
                    // of its own, another kind than the list's): read again once it is known.
                    if listKind == nil { doubtful = true }
                    issues.append(issue)
                }
            }
            if listKind == nil { itemsRead = .speculatively(apiVersion: apiVersion, doubtful: doubtful) }
        }

        /// Whether items read speculatively are what reading them as items of `kind` gives.
        func speculationHolds(kind: String, apiVersion readWith: String?, doubtful: Bool) -> Bool {
            guard !doubtful else { return false }
            if kind == "List" { return readWith == nil }
            guard readWith == apiVersion, let itemKind = APIDecoder.itemKind(ofList: kind, apiVersion: apiVersion).name else { return false }
            return items.allSatisfy { $0.object.kind == itemKind }
        }

        let innerDepth = depth + 1
        try readObject { r, key throws(JSONSyntaxError) in
            if key.is("kind") {
                kind = try r.envelopeString("kind", source: source, failure: &failure)
            } else if key.is("apiVersion") {
                apiVersion = try r.envelopeString("apiVersion", source: source, failure: &failure)
            } else if key.is("metadata") {
                guard try r.peekType() == .object else {
                    if try r.peekType() != .null && failure == nil {
                        failure = APIDecodeError(code: .wrongType, source: source, field: "metadata", message: "has the wrong type, expected Mapping")
                    }
                    return try r.skipValue()
                }
                try r.readObject { r, key throws(JSONSyntaxError) in
                    if key.is("resourceVersion") {
                        resourceVersion = try r.envelopeString("metadata.resourceVersion", source: source, failure: &failure)
                    } else if key.is("continue") {
                        continueToken = try r.envelopeString("metadata.continue", source: source, failure: &failure)
                    } else if key.is("remainingItemCount") {
                        var count: Int?
                        let problem = try r.section("metadata.remainingItemCount") { r throws(JSONSyntaxError) in count = try r.optionalInt() }
                        remainingItemCount = count
                        if let error = problem, failure == nil {
                            failure = APIDecodeError(code: .wrongType, source: source, field: error.field, message: error.reason)
                        }
                    } else {
                        try r.skipValue()
                    }
                }
            } else if key.is("items") {
                itemsOffset = r.position
                itemsRead = .no
                if let kind {
                    // Decoded now when the list's kind is known (the API server writes it first).
                    guard kind == "List" || APIDecoder.itemKind(ofList: kind, apiVersion: apiVersion).kind != .other else {
                        return try r.skipValue()
                    }
                    try readItems(&r, listKind: kind)
                } else {
                    // kubectl sorts keys: items come before kind. Read each item as the kind it
                    // names (kubectl's do name one); checked against the list's kind below.
                    try readItems(&r, listKind: nil)
                }
            } else {
                try r.skipValue()
            }
        }
        guard isAtEnd() else { throw syntaxError("unexpected data after the JSON value") }

        if let failure { return .failure(failure) }
        guard let kind else {
            return .failure(APIDecodeError(code: .missingField, source: source, field: "kind", message: "is missing"))
        }
        if kind == "Status" {
            return .failure(APIDecodeError(code: .status, source: source, message: "is a Status, not a list"))
        }
        guard kind == "List" || APIDecoder.itemKind(ofList: kind, apiVersion: apiVersion).kind != .other else {
            let written = kind + (apiVersion.map { " (apiVersion \($0))" } ?? "")
            return .failure(APIDecodeError(
                code: .wrongKind, source: source, field: "kind",
                message: "is \(written), expected NamespaceList, PodList, NetworkPolicyList or NodeList"))
        }
        guard let resourceVersion, !resourceVersion.isEmpty else {
            return .failure(APIDecodeError(code: .missingField, source: source, field: "metadata.resourceVersion", message: "is required but missing"))
        }
        let usable: Bool
        switch itemsRead {
        case .no: usable = false
        case .asItemsOf(let readAs): usable = readAs == kind
        case .speculatively(let readWith, let doubtful): usable = speculationHolds(kind: kind, apiVersion: readWith, doubtful: doubtful)
        }
        if let itemsOffset, !usable {
            // `items` came before `kind` and needs it (items without their own kind): read again.
            var again = self
            again.position = itemsOffset
            again.depth = innerDepth
            try readItems(&again, listKind: kind)
            if let failure { return .failure(failure) }
        }
        return .success(ListPage(
            kind: kind, resourceVersion: resourceVersion, continueToken: continueToken.flatMap { $0.isEmpty ? nil : $0 },
            remainingItemCount: remainingItemCount, items: items, issues: issues))
    }

    /// Reads a watch event; syntax errors throw, everything else is the result.
    mutating func watchEvent(source: String) throws(JSONSyntaxError) -> Result<WatchEvent, APIDecodeError> {
        guard try peekType() == .object else {
            try skipValue()
            guard isAtEnd() else { throw syntaxError("unexpected data after the JSON value") }
            return .failure(APIDecodeError(code: .wrongType, source: source, message: "is not a JSON object"))
        }
        var failure: APIDecodeError?
        var type: String?
        var objectOffset: Int?
        var event: Result<WatchEvent, APIDecodeError>?
        var eventType: String?  // the type `event` was read as
        let innerDepth = depth + 1
        try readObject { r, key throws(JSONSyntaxError) in
            if key.is("type") {
                type = try r.envelopeString("type", source: source, failure: &failure)
            } else if key.is("object") {
                objectOffset = r.position
                event = nil
                eventType = type
                if let type {
                    event = try r.watchObject(type: type, source: source)
                } else {
                    try r.skipValue()
                }
            } else {
                try r.skipValue()
            }
        }
        guard isAtEnd() else { throw syntaxError("unexpected data after the JSON value") }
        if let failure { return .failure(failure) }
        guard let type else {
            return .failure(APIDecodeError(code: .missingField, source: source, field: "type", message: "is missing"))
        }
        guard let objectOffset else {
            return .failure(APIDecodeError(code: .missingField, source: source, field: "object", message: "is missing"))
        }
        if let event, eventType == type { return event }
        // `object` came before `type` (or `type` was repeated): read it as the type it has.
        var again = self
        again.position = objectOffset
        again.depth = innerDepth
        return try again.watchObject(type: type, source: source)
    }

    /// Reads a watch event's object as an event of `type`.
    private mutating func watchObject(type: String, source: String) throws(JSONSyntaxError) -> Result<WatchEvent, APIDecodeError> {
        switch type {
        case "ADDED", "MODIFIED", "DELETED":
            switch try decodeAPIObject(
                location: JSONLocation(parent: "object"), inferredKind: nil, inferredAPIVersion: nil, expected: nil, source: source)
            {
            case .failure(let code, let issue):
                return .failure(APIDecodeError(code, issue))
            case .item(let item):
                guard !item.resourceVersion.isEmpty else {
                    return .failure(APIDecodeError(
                        code: .missingField, source: source, object: "\(item.object.kind) \(Self.key(of: item.object))",
                        field: "metadata.resourceVersion", message: "is required but missing"))
                }
                return .success(type == "ADDED" ? .added(item) : type == "MODIFIED" ? .modified(item) : .deleted(item))
            }
        case "BOOKMARK":
            guard try peekType() == .object else {
                try skipValue()
                return .failure(APIDecodeError(code: .wrongType, source: source, field: "object", message: "has the wrong type, expected Mapping"))
            }
            var failure: APIDecodeError?
            var resourceVersion: String?
            try readObject { r, key throws(JSONSyntaxError) in
                guard key.is("metadata") else { return try r.skipValue() }
                guard try r.peekType() == .object else {
                    if failure == nil {
                        failure = APIDecodeError(
                            code: .wrongType, source: source, field: "object.metadata", message: "has the wrong type, expected Mapping")
                    }
                    return try r.skipValue()
                }
                try r.readObject { r, key throws(JSONSyntaxError) in
                    guard key.is("resourceVersion") else { return try r.skipValue() }
                    resourceVersion = try r.envelopeString("object.metadata.resourceVersion", source: source, failure: &failure)
                }
            }
            if let failure { return .failure(failure) }
            guard let resourceVersion, !resourceVersion.isEmpty else {
                return .failure(APIDecodeError(
                    code: .missingField, source: source, field: "object.metadata.resourceVersion", message: "is required but missing"))
            }
            return .success(.bookmark(resourceVersion: resourceVersion))
        case "ERROR":
            guard try peekType() == .object else {
                try skipValue()
                return .failure(APIDecodeError(code: .wrongType, source: source, field: "object", message: "has the wrong type, expected Mapping (a Status)"))
            }
            return .success(.error(try status().status))
        default:
            try skipValue()
            return .failure(APIDecodeError(
                code: .unknownEventType, source: source, field: "type",
                message: "is \(Validation.quoted(type)), expected ADDED, MODIFIED, DELETED, BOOKMARK or ERROR"))
        }
    }

    /// `namespace/name` or `name`.
    private static func key(of object: APIObject) -> String {
        object.namespace.map { "\($0)/\(object.name)" } ?? object.name
    }

    /// Reads a Status object leniently (fields of the wrong type read as absent); returns its
    /// kind too.
    mutating func status() throws(JSONSyntaxError) -> (kind: String?, status: APIStatus) {
        var kind: String?
        var status = APIStatus(code: 0, reason: "", message: "")
        try readObject { r, key throws(JSONSyntaxError) in
            if key.is("kind") {
                kind = try r.lenientString()
            } else if key.is("code") {
                status.code = try r.lenientInt() ?? 0
            } else if key.is("reason") {
                status.reason = try r.lenientString() ?? ""
            } else if key.is("message") {
                status.message = try r.lenientString() ?? ""
            } else if key.is("details"), try r.peekType() == .object {
                try r.readObject { r, key throws(JSONSyntaxError) in
                    guard key.is("retryAfterSeconds") else { return try r.skipValue() }
                    status.retryAfterSeconds = try r.lenientInt()
                }
            } else {
                try r.skipValue()
            }
        }
        return (kind, status)
    }

    /// An integer where any other value (another type, a fraction, out of range) reads as absent.
    private mutating func lenientInt() throws(JSONSyntaxError) -> Int? {
        guard try peekType() == .number else {
            try skipValue()
            return nil
        }
        // A failure here is no one's business: keep the one recorded before, if any.
        let saved = fieldFailure
        let value = try optionalInt()
        fieldFailure = saved
        return value
    }
}
