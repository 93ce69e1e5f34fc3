import CConntrack
import Glibc
import KubeModel

/// A failed conntrack deletion: which libnetfilter_conntrack step failed, for which family,
/// with which errno, and how many entries had been deleted before it.
public struct ConntrackError: Error, CustomStringConvertible, Sendable {
    /// A libnetfilter_conntrack step. Extensible: new steps are new static members.
    public struct Operation: Hashable, Sendable, CustomStringConvertible {
        private enum Code: Hashable, Sendable {
            case open, register, dump, destroy
        }

        private var code: Code

        private init(_ code: Code) { self.code = code }

        /// Opening a conntrack netlink handle (`nfct_open`).
        public static let open = Operation(.open)
        /// Registering the dump callback (`nfct_callback_register`).
        public static let register = Operation(.register)
        /// Dumping the conntrack table (`nfct_query` with `NFCT_Q_DUMP`).
        public static let dump = Operation(.dump)
        /// Destroying one entry (`nfct_query` with `NFCT_Q_DESTROY`).
        public static let destroy = Operation(.destroy)

        /// Maps the step the C shim reports.
        init(_ step: picket_ct_step) {
            switch step {
            case PICKET_CT_STEP_OPEN: self = .open
            case PICKET_CT_STEP_REGISTER: self = .register
            case PICKET_CT_STEP_DESTROY: self = .destroy
            default: self = .dump
            }
        }

        /// The C call, e.g. `nfct_query(NFCT_Q_DUMP)`.
        public var description: String {
            switch code {
            case .open: "nfct_open"
            case .register: "nfct_callback_register"
            case .dump: "nfct_query(NFCT_Q_DUMP)"
            case .destroy: "nfct_query(NFCT_Q_DESTROY)"
            }
        }
    }

    /// The step that failed.
    public var operation: Operation
    /// The address family whose entries were being deleted.
    public var family: IPAddress.Family
    /// The errno the step failed with.
    public var errorNumber: Int32
    /// Entries deleted by the call before the failure; they stay deleted.
    public var deletedBeforeFailure: Int

    /// Creates an error.
    public init(operation: Operation, family: IPAddress.Family, errorNumber: Int32, deletedBeforeFailure: Int = 0) {
        self.operation = operation
        self.family = family
        self.errorNumber = errorNumber
        self.deletedBeforeFailure = deletedBeforeFailure
    }

    /// The errno text, e.g. "Operation not permitted".
    public var errorText: String { String(cString: strerror(errorNumber)) }

    /// E.g. `conntrack: deleting IPv4 entries: nfct_open failed: Operation not permitted
    /// (errno 1); 0 entries deleted before the failure; run with CAP_NET_ADMIN ...`.
    public var description: String {
        var text = "conntrack: deleting \(family == .v4 ? "IPv4" : "IPv6") entries: \(operation) failed: "
            + "\(errorText) (errno \(errorNumber)); \(deletedBeforeFailure) entries deleted before the failure"
        if errorNumber == EPERM {
            text += "; run with CAP_NET_ADMIN in the node's network namespace"
        } else if errorNumber == EPROTONOSUPPORT || (errorNumber == ENOENT && operation == .open) {
            text += "; load the nf_conntrack_netlink kernel module"
        }
        return text
    }
}
