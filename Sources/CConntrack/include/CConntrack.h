#pragma once
// Minimal shim over libnetfilter_conntrack for Picket: delete, or set a mark bit on, the
// conntrack entries of one address family whose original or reply source or destination is in
// a sorted address list.
//
// libnetfilter_conntrack delivers dumped entries to a C callback that cannot capture Swift
// state, so the dump-filter-delete loop lives here; choosing and sorting the addresses, and
// turning failures into errors, stay in Swift. The headers of libnetfilter_conntrack are
// included only by CConntrack.c so that Swift sees nothing but this file.

#include <stddef.h>
#include <stdint.h>

/// The libnetfilter_conntrack step that failed, recorded in `picket_ct_result.step`.
typedef enum picket_ct_step {
    PICKET_CT_STEP_NONE = 0,     // no failure
    PICKET_CT_STEP_OPEN = 1,     // nfct_open
    PICKET_CT_STEP_REGISTER = 2, // nfct_callback_register
    PICKET_CT_STEP_DUMP = 3,     // nfct_query(NFCT_Q_DUMP)
    PICKET_CT_STEP_DESTROY = 4,  // nfct_query(NFCT_Q_DESTROY)
} picket_ct_step;

/// What one `picket_ct_delete` call did.
typedef struct picket_ct_result {
    /// Entries destroyed by this call.
    uint64_t deleted;
    /// Matching entries that were gone (ENOENT) when this call tried to destroy them.
    uint64_t vanished;
    /// The step that failed, or PICKET_CT_STEP_NONE.
    picket_ct_step step;
    /// errno of the failed step, or 0.
    int error;
} picket_ct_result;

/// Dumps the conntrack table of `family` (AF_INET or AF_INET6) in the network namespace of the
/// calling thread and destroys, through a second netlink handle, every entry whose original or
/// reply source or destination equals one of `count` addresses. `addresses` holds them back to
/// back in network byte order (4 bytes each for AF_INET, 16 for AF_INET6), sorted ascending by
/// memcmp and without duplicates. Stops at the first failure other than ENOENT on a destroy.
/// Returns 0 on success and -1 on failure; `result` is filled in both cases.
int picket_ct_delete(int family, const uint8_t *addresses, size_t count, picket_ct_result *result);

/// Like `picket_ct_delete`, but instead of destroying a matching entry sets its conntrack mark
/// to `(old & ~mask) | (mark & mask)` and, with `clear_label` 0...127, clears that conntrack
/// label bit (NFCT_Q_UPDATE naming the entry by its original tuple, both in one message);
/// entries already carrying the bits are left alone. `result.deleted` counts the entries
/// changed. With `mask` 0 it destroys, as `picket_ct_delete` (`clear_label` must then be -1).
int picket_ct_mark(int family, const uint8_t *addresses, size_t count, uint32_t mark, uint32_t mask, int clear_label,
                   picket_ct_result *result);
