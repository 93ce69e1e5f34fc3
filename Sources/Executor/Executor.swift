import KubeModel
import PolicyCompiler

/// Makes the node hold a Ruleset. Keeps the last state it applied, so that a sync whose
/// compiled rules did not change touches nothing; reads the kernel back when asked to verify
/// (periodic resync, or a one-shot command that has no memory), and repairs what it finds.
public final class Executor {
    private let kernel: any KernelAccess
    /// The structural check every restore text passes before it is written.
    private let restoreGuard: RestoreGuard
    /// The state the last successful apply left (nil before the first).
    public private(set) var lastApplied: NodeState?
    /// The ruleset `lastApplied` was made from (renumbered against the node).
    private var lastRuleset: Ruleset?
    /// The ruleset last passed to `apply`, before renumbering: an equal one changes nothing.
    private var lastInput: Ruleset?

    /// An executor over `kernel`; every text it restores must pass `restoreGuard` first.
    public init(kernel: any KernelAccess, restoreGuard: RestoreGuard = .standard) {
        self.kernel = kernel
        self.restoreGuard = restoreGuard
    }

    /// Picket's state as the kernel holds it now.
    public func readKernel() throws(ApplyError) -> NodeState {
        var state = NodeState()
        state.sets = KernelText.parseSets(try kernel.saveSets())
        for family in IPAddress.Family.allCases {
            for (name, table) in KernelText.parseTables(try kernel.saveTable(family)) where TableName.allCases.contains(name) {
                if !table.chains.isEmpty || !table.hooks.isEmpty { state.tables[.init(family, name)] = table }
            }
        }
        return state
    }

    /// Applies `ruleset`. With `verify` false (after a first apply) the difference is planned
    /// against the last applied state, and a ruleset equal to it touches nothing, not even a read.
    /// With `verify` (the first apply, periodic resyncs, one-shot commands) the kernel is read
    /// back and whatever drifted is repaired too.
    /// A thrown error means the kernel refused: the node keeps enforcing the previous rules (see
    /// `execute`). Once the rules are committed `apply` returns, and a failure to mark conntrack
    /// entries afterwards is told in the report (`conntrackFailure`), not thrown.
    @discardableResult
    public func apply(_ ruleset: Ruleset, verify: Bool = false) throws(ApplyError) -> ApplyReport {
        // Without `verify` the last applied state stands for the kernel: a change is planned
        // against memory and costs no read-back, and an unchanged ruleset costs one comparison.
        // Drift is found by the periodic verify.
        let current: NodeState
        let desired: NodeState
        let renumbered: Ruleset
        if !verify, let lastApplied, let lastRuleset, let lastInput {
            if lastInput == ruleset { return ApplyReport() }
            current = lastApplied
            renumbered = ruleset.renumbered(keeping: current.carriedNumbers(ruleset.marks))
            desired = NodeState(renumbered, reusing: lastApplied, of: lastRuleset)
        } else {
            current = try readKernel()
            renumbered = ruleset.renumbered(keeping: current.carriedNumbers(ruleset.marks))
            desired = NodeState(renumbered)
        }
        // Groups keep the numbers pods carry; the trees written before pods are re-tagged also
        // keep leaves for numbers on their way out.
        let plan = Plan(
            from: current, to: desired, transition: renumbered.transition(from: current.carriedNumbers(ruleset.marks, staying: desired)))
        var report: ApplyReport
        do {
            report = try execute(plan)
        } catch {
            // A failed plan may have left part of itself in the kernel (a family restored before
            // another failed, chains written before the member step failed): memory no longer
            // stands for the kernel, so the next apply reads it back.
            lastApplied = nil
            lastRuleset = nil
            lastInput = nil
            throw error
        }
        // The rules are in force whatever happens to conntrack.
        lastApplied = desired
        lastRuleset = renumbered
        lastInput = ruleset
        if !plan.revoke.isEmpty {
            do {
                report.conntrackMarked = try kernel.recheckConntrack(plan.revoke, mark: ruleset.recheckMark)
            } catch {
                report.conntrackFailure = error
            }
        }
        return report
    }

    /// Removes every chain, hook and set Picket created, and nothing else. Idempotent.
    @discardableResult
    public func cleanup() throws(ApplyError) -> ApplyReport {
        let plan = Plan(from: try readKernel(), to: NodeState())
        let report = try execute(plan)
        lastApplied = nil
        lastRuleset = nil
        lastInput = nil
        return report
    }

    /// Runs the steps of a plan. If step 1 fails, the sets it created are destroyed; if
    /// step 2 fails (atomically, per family), families already restored are left as they are
    /// (they are consistent), the new sets nothing references are destroyed, and the error is
    /// thrown: the previous rules stay in force. Step 3 failures leave the rules consistent;
    /// the next apply repairs the members.
    private func execute(_ plan: Plan) throws(ApplyError) -> ApplyReport {
        guard !plan.isEmpty else { return plan.report }
        // A second line of defence: refuse the whole plan, before anything is written, if any
        // of its lines would touch something other than Picket's chains, hooks and sets.
        try plan.check(restoreGuard)
        if plan.tables.isEmpty && plan.settle.isEmpty {
            // Pod churn: no rule changes, so both set steps go in one batch, in order.
            do {
                try kernel.restoreSets(plan.prepare + plan.finish + plan.destroy)
            } catch {
                rollBack(plan)
                throw ApplyError(step: "ipset restore (members)", message: error.message, context: error.context)
            }
            return plan.report
        }
        do {
            try kernel.restoreSets(plan.prepare)
        } catch {
            rollBack(plan)
            throw ApplyError(step: "ipset restore (new sets)", message: error.message, context: error.context)
        }
        for (family, text) in plan.tables {
            do {
                try kernel.restoreTable(family, text)
            } catch {
                if family == plan.tables.first?.family { rollBack(plan) }
                throw error
            }
        }
        do {
            try kernel.restoreSets(plan.finish)
        } catch {
            throw ApplyError(step: "ipset restore (members and stale sets)", message: error.message, context: error.context)
        }
        // The final trees and the removal of stale chains; on failure the interim trees stay,
        // which dispatch every pod correctly, and the next apply finishes the job.
        for (family, text) in plan.settle {
            try kernel.restoreTable(family, text)
        }
        do {
            try kernel.restoreSets(plan.destroy)
        } catch {
            throw ApplyError(step: "ipset restore (stale sets)", message: error.message, context: error.context)
        }
        return plan.report
    }

    /// Destroys the sets a failed plan created, as far as they exist; what cannot be destroyed
    /// is left for the next apply, which sees it as stale.
    private func rollBack(_ plan: Plan) {
        for name in plan.created {
            do {
                try kernel.restoreSets(["destroy \(name)"])
            } catch {
                continue
            }
        }
    }
}
