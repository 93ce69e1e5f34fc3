import KubeModel
import Testing

@Suite struct SelectorTests {
    let web = ["app": "web", "tier": "front"]

    private func compiled(_ selector: LabelSelector) throws -> Selector {
        try selector.compiled().get()
    }

    @Test("the empty selector matches everything")
    func empty() throws {
        #expect(try compiled(LabelSelector()).matches([:]))
        #expect(try compiled(LabelSelector(matchLabels: [:], matchExpressions: [])).matches(web))
    }

    @Test("matchLabels and matchExpressions are ANDed")
    func and() throws {
        let s = try compiled(LabelSelector(
            matchLabels: ["app": "web"], matchExpressions: [.init(key: "tier", operator: "In", values: ["front", "edge"])]))
        #expect(s.matches(web))
        #expect(!s.matches(["app": "web", "tier": "back"]))
        #expect(!s.matches(["tier": "front"]))
    }

    @Test("operators: In, NotIn (absent key matches), Exists, DoesNotExist")
    func operators() throws {
        let notIn = try compiled(LabelSelector(matchExpressions: [.init(key: "env", operator: "NotIn", values: ["prod"])]))
        #expect(notIn.matches([:]))
        #expect(notIn.matches(["env": "dev"]))
        #expect(!notIn.matches(["env": "prod"]))
        let exists = try compiled(LabelSelector(matchExpressions: [.init(key: "role", operator: "Exists")]))
        #expect(exists.matches(["role": ""]))
        #expect(!exists.matches([:]))
        let absent = try compiled(LabelSelector(matchExpressions: [.init(key: "quarantine", operator: "DoesNotExist")]))
        #expect(absent.matches(web))
        #expect(!absent.matches(["quarantine": "yes"]))
    }

    @Test("invalid expressions name the field", arguments: [
        (LabelSelector.Expression(key: "a", operator: "Foo"), "matchExpressions[0].operator"),
        (LabelSelector.Expression(key: "a", operator: "In", values: []), "matchExpressions[0].values"),
        (LabelSelector.Expression(key: "a", operator: "NotIn"), "matchExpressions[0].values"),
        (LabelSelector.Expression(key: "a", operator: "Exists", values: ["x"]), "matchExpressions[0].values"),
        (LabelSelector.Expression(key: "", operator: "Exists"), "matchExpressions[0].key"),
    ])
    func invalid(_ pair: (LabelSelector.Expression, String)) {
        guard case .failure(let error) = LabelSelector(matchExpressions: [pair.0]).compiled() else {
            Issue.record("accepted an invalid expression")
            return
        }
        #expect(error.field == pair.1)
    }

    @Test("selectors print like kubectl")
    func text() throws {
        let s = try compiled(LabelSelector(
            matchLabels: ["app": "web"],
            matchExpressions: [.init(key: "env", operator: "NotIn", values: ["b", "a"]), .init(key: "x", operator: "DoesNotExist")]))
        #expect(s.description == "app=web,env notin (a,b),!x")
        #expect(Selector.everything.description == "<all>")
    }
}
