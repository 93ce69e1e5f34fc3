/// A metav1.LabelSelector as written in a manifest: `matchLabels` and `matchExpressions`.
public struct LabelSelector: Decodable, Hashable, Sendable {
    /// One `matchExpressions` entry, unvalidated.
    public struct Expression: Decodable, Hashable, Sendable {
        /// The label key.
        public var key: String
        /// The operator text: In, NotIn, Exists or DoesNotExist.
        public var `operator`: String
        /// The values (for In and NotIn).
        public var values: [String]?

        /// Creates an expression.
        public init(key: String, operator op: String, values: [String]? = nil) {
            self.key = key
            self.operator = op
            self.values = values
        }
    }

    /// matchLabels.
    public var matchLabels: [String: String]?
    /// matchExpressions.
    public var matchExpressions: [Expression]?

    /// Creates a selector.
    public init(matchLabels: [String: String]? = nil, matchExpressions: [Expression]? = nil) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    /// Compiles the selector, or says which field is wrong (relative to the selector).
    public func compiled() -> Result<Selector, FieldError> {
        // Keys and values as the API server checks them (qualified names, label values); the
        // first problem is reported, and the selector is not used.
        if let error = Validation.selectorSyntax(self).first { return .failure(error) }
        var requirements: [Selector.Requirement] = []
        for (key, value) in (matchLabels ?? [:]).sorted(by: { $0.key < $1.key }) {
            requirements.append(.init(key: key, op: .in, values: [value]))
        }
        for (i, expression) in (matchExpressions ?? []).enumerated() {
            let field = "matchExpressions[\(i)]"
            let values = expression.values ?? []
            let op: Selector.Operator
            switch expression.operator {
            case "In": op = .in
            case "NotIn": op = .notIn
            case "Exists": op = .exists
            case "DoesNotExist": op = .doesNotExist
            default:
                return .failure(FieldError(
                    field: "\(field).operator",
                    reason: "\"\(expression.operator)\" is not a valid operator (In, NotIn, Exists, DoesNotExist)"))
            }
            switch op {
            case .in, .notIn:
                if values.isEmpty {
                    return .failure(FieldError(
                        field: "\(field).values", reason: "must be non-empty when operator is \(expression.operator)"))
                }
            case .exists, .doesNotExist:
                if !values.isEmpty {
                    return .failure(FieldError(
                        field: "\(field).values", reason: "must be empty when operator is \(expression.operator)"))
                }
            }
            requirements.append(.init(key: expression.key, op: op, values: Set(values)))
        }
        return .success(Selector(requirements: requirements))
    }
}

/// A validated label selector, ready to match. An empty selector matches everything.
public struct Selector: Hashable, Sendable, CustomStringConvertible {
    /// How a requirement compares a label.
    public enum Operator: String, Hashable, Sendable {
        case `in` = "in"
        case notIn = "notin"
        case exists = "exists"
        case doesNotExist = "!"
    }

    /// One requirement; a selector matches when all of them do.
    public struct Requirement: Hashable, Sendable {
        /// The label key.
        public var key: String
        /// The comparison.
        public var op: Operator
        /// The values for `in` and `notIn`.
        public var values: Set<String>

        /// Whether `labels` satisfies this requirement.
        @inlinable
        public func matches(_ labels: [String: String]) -> Bool {
            switch op {
            case .in:
                guard let value = labels[key] else { return false }
                return values.contains(value)
            case .notIn:
                guard let value = labels[key] else { return true }
                return !values.contains(value)
            case .exists:
                return labels[key] != nil
            case .doesNotExist:
                return labels[key] == nil
            }
        }
    }

    /// The selector that matches every object.
    public static let everything = Selector(requirements: [])

    /// The requirements, matchLabels first (sorted by key) then matchExpressions in order.
    public var requirements: [Requirement]

    /// Creates a selector from requirements.
    public init(requirements: [Requirement]) {
        self.requirements = requirements
    }

    /// Whether the selector matches everything.
    public var isEverything: Bool { requirements.isEmpty }

    /// Whether `labels` satisfies every requirement.
    @inlinable
    public func matches(_ labels: [String: String]) -> Bool {
        for requirement in requirements where !requirement.matches(labels) { return false }
        return true
    }

    /// kubectl's text form, e.g. `app=web,tier in (a,b),!legacy`; `<all>` for the empty selector.
    public var description: String {
        if requirements.isEmpty { return "<all>" }
        return requirements.map { r in
            switch r.op {
            case .in where r.values.count == 1: "\(r.key)=\(r.values.first!)"
            case .in: "\(r.key) in (\(r.values.sorted().joined(separator: ",")))"
            case .notIn: "\(r.key) notin (\(r.values.sorted().joined(separator: ",")))"
            case .exists: r.key
            case .doesNotExist: "!\(r.key)"
            }
        }.joined(separator: ",")
    }
}

/// A field that failed validation, with a path relative to some object and a reason.
public struct FieldError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The field path, e.g. `spec.ingress[0].ports[1].endPort`.
    public var field: String
    /// What is wrong and what is expected.
    public var reason: String

    /// Creates a field error.
    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    /// The same error under a parent path.
    public func under(_ parent: String) -> FieldError {
        FieldError(field: field.isEmpty ? parent : "\(parent).\(field)", reason: reason)
    }

    public var description: String { "\(field): \(reason)" }
}
