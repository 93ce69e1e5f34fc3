import KubeModel
import PolicyCompiler

/// Makes the node hold a Ruleset. Keeps the last state it applied, so that a sync whose
/// compiled rules did not change touches nothing; checks the kernel when asked to verify
/// (periodic resync, or a one-shot command that has no memory), and repairs what it finds.
///
/// Not thread-safe, and not meant to be: one thread owns an executor and makes every call (the
/// daemon's sync loop thread, which also holds the network namespace; a command's main thread).
public final class Executor {
    private let kernel: any KernelAccess
    /// The structural check every restore text passes before it is written.
    private let restoreGuard: RestoreGuard
    /// When verifies are due.
    public let schedule: VerifySchedule
    /// The state the last successful apply left (nil before the first).
    public private(set) var lastApplied: NodeState?
    /// The ruleset `lastApplied` was made from (renumbered against the node).
    private var lastRuleset: Ruleset?
    /// The ruleset last passed to `apply`, before renumbering: an equal one changes nothing.
    private var lastInput: Ruleset?
    /// The kernel's fingerprint when memory last matched it (after a write or a read-back).
    private var lastFingerprint: KernelFingerprint?
    /// When the kernel was last read back in full.
    private var lastReadBack: ContinuousClock.Instant?

    /// An executor over `kernel`; every text it restores must pass `restoreGuard` first.
    public init(kernel: any KernelAccess, restoreGuard: RestoreGuard = .standard, schedule: VerifySchedule = VerifySchedule()) {
        self.kernel = kernel
        self.restoreGuard = restoreGuard
        self.schedule = schedule
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

    /// Applies `ruleset`; `verify` true reads the kernel back in full (`Verification.full`).
    @discardableResult
    public func apply(_ ruleset: Ruleset, verify: Bool) throws(ApplyError) -> ApplyReport {
        try apply(ruleset, verification: verify ? .full : .none)
    }

    /// Applies `ruleset`, checking the kernel as `verification` says (see `Verification`); after
    /// a first apply, `.none` plans the difference against the last applied state, and a ruleset
    /// equal to it touches nothing, not even a read. Whatever a read-back finds drifted is
    /// repaired. The report tells how the kernel was checked and when the next verify is due.
    /// A thrown error means the kernel refused: the node keeps enforcing the previous rules (see
    /// `execute`). Once the rules are committed `apply` returns, and a failure to mark conntrack
    /// entries afterwards is told in the report (`conntrackFailure`), not thrown.
    ///
    /// `committed` is called once the rules are in force for new connections, before the
    /// conntrack entries of flows that may have lost access are flagged (a walk of the host's
    /// whole conntrack table, whose cost grows with it); the report times that step
    /// (`conntrackDuration`). It is called for an apply that changed nothing too.
    @discardableResult
    public func apply(
        _ ruleset: Ruleset, verification: Verification = .none, committed: () -> Void = {}
    ) throws(ApplyError) -> ApplyReport {
        let now = ContinuousClock.now
        var readBack = verification == .full || lastApplied == nil
        var checked: ApplyReport.Check = readBack ? .readBack : .none
        if verification == .scheduled && !readBack {
            if let last = lastReadBack, now < last + schedule.fullReadPeriod, let before = lastFingerprint,
               let seen = try? kernel.fingerprint(), seen == before {
                checked = .fingerprint
            } else {
                readBack = true
                checked = .readBack
            }
        }
        // Without a read-back the last applied state stands for the kernel: a change is planned
        // against memory, and an unchanged ruleset costs one comparison. Drift is found by the
        // periodic verify.
        let current: NodeState
        let desired: NodeState
        let renumbered: Ruleset
        if !readBack, let lastApplied, let lastRuleset, let lastInput {
            if lastInput == ruleset {
                committed()
                return finished(ApplyReport(), checked: checked, wrote: false, readBack: false, at: now)
            }
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
            lastFingerprint = nil
            throw error
        }
        // The rules are in force whatever happens to conntrack.
        lastApplied = desired
        lastRuleset = renumbered
        lastInput = ruleset
        committed()
        if !plan.revoke.isEmpty {
            let start = ContinuousClock.now
            do {
                report.conntrackMarked = try kernel.recheckConntrack(plan.revoke, mark: ruleset.recheckMark, clearingLabel: ruleset.marks.seenLabel)
            } catch {
                report.conntrackFailure = error
            }
            report.conntrackDuration = ContinuousClock.now - start
        }
        return finished(report, checked: checked, wrote: !plan.isEmpty, readBack: readBack, at: now)
    }

    /// Completes a successful apply's report; after a write or a read-back, memory matches the
    /// kernel, so its fingerprint is taken again for the next scheduled verify.
    private func finished(_ report: ApplyReport, checked: ApplyReport.Check, wrote: Bool, readBack: Bool, at start: ContinuousClock.Instant) -> ApplyReport {
        var report = report
        report.check = checked
        if readBack { lastReadBack = start }
        if wrote || readBack || lastFingerprint == nil {
            // A change someone makes between the write and this call is seen by the next full
            // read-back (at most `fullReadPeriod` later).
            lastFingerprint = try? kernel.fingerprint()
        }
        report.nextVerify = (checked == .none ? nextVerify : nil) ?? ContinuousClock.now + schedule.verifyPeriod
        nextVerify = report.nextVerify
        return report
    }

    /// When the next scheduled verify is due (after the last one, or the first apply).
    public private(set) var nextVerify: ContinuousClock.Instant?

    /// Removes every chain, hook and set Picket created, and nothing else. Idempotent.
    @discardableResult
    public func cleanup() throws(ApplyError) -> ApplyReport {
        let plan = Plan(from: try readKernel(), to: NodeState())
        let report = try execute(plan)
        lastApplied = nil
        lastRuleset = nil
        lastInput = nil
        lastFingerprint = nil
        lastReadBack = nil
        nextVerify = nil
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

/// How much an apply checks the kernel before planning.
public enum Verification: Sendable {
    /// Nothing: memory stands for the kernel (after a first apply, which always reads back).
    case none
    /// The periodic verify: read back in full when the kernel's fingerprint moved since memory
    /// last matched it, when the kernel has none (legacy iptables), or when the last full read
    /// is `VerifySchedule.fullReadPeriod` old; otherwise trust memory at the cost of one
    /// netlink request and a header listing.
    case scheduled
    /// Read back in full (one-shot commands, retries after a failure).
    case full
}

/// When the owner of an executor should verify (`--iptables-sync-period`), and how often a
/// verify reads back in full even when the fingerprint says nothing changed.
public struct VerifySchedule: Sendable {
    /// Between two verifies.
    public var verifyPeriod: Duration
    /// The longest time without a full read-back, at verifies: covers a change made between a
    /// write and the fingerprint taken after it, and changes no fingerprint shows (a rule edited
    /// in place keeping Picket's identity, a member swapped for another).
    public var fullReadPeriod: Duration

    /// A verify every `verifyPeriod` (default 5 minutes, as `--iptables-sync-period`), reading
    /// back in full at least every `fullReadPeriod` (default 5 minutes).
    public init(verifyPeriod: Duration = .seconds(300), fullReadPeriod: Duration = .seconds(300)) {
        self.verifyPeriod = verifyPeriod
        self.fullReadPeriod = fullReadPeriod
    }
}
