#include "CConntrack.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

/// State shared with the dump callback through its data pointer.
struct picket_ct_context {
    /// The second handle, on which matching entries are destroyed or updated.
    struct nfct_handle *destroyer;
    /// 0: destroy matching entries; otherwise set `mark` under this mask on them.
    uint32_t mask;
    uint32_t mark;
    /// A conntrack label bit to clear along with the mark (0...127), or -1.
    int clear_label;
    uint8_t family;
    size_t width;
    const uint8_t *addresses;
    size_t count;
    picket_ct_result *result;
};

/// Binary search of the sorted address list.
static int picket_ct_contains(const struct picket_ct_context *context, const void *address) {
    size_t low = 0, high = context->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = memcmp(address, context->addresses + middle * context->width, context->width);
        if (order == 0) return 1;
        if (order < 0) high = middle; else low = middle + 1;
    }
    return 0;
}

/// Whether the original or reply source or destination of `entry` is in the list.
static int picket_ct_involves(const struct picket_ct_context *context, const struct nf_conntrack *entry) {
    static const enum nf_conntrack_attr v4[] = {
        ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV4_DST, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV4_DST,
    };
    static const enum nf_conntrack_attr v6[] = {
        ATTR_ORIG_IPV6_SRC, ATTR_ORIG_IPV6_DST, ATTR_REPL_IPV6_SRC, ATTR_REPL_IPV6_DST,
    };
    const enum nf_conntrack_attr *attributes = context->family == AF_INET ? v4 : v6;
    for (int i = 0; i < 4; i++) {
        // NULL (ENODATA) when the entry lacks the attribute.
        const void *address = nfct_get_attr(entry, attributes[i]);
        if (address != NULL && picket_ct_contains(context, address)) return 1;
    }
    return 0;
}

/// Dump callback: destroy a matching entry on the second handle (the dumping one is busy).
static int picket_ct_on_entry(enum nf_conntrack_msg_type type, struct nf_conntrack *entry, void *data) {
    struct picket_ct_context *context = data;
    (void)type;
    if (nfct_get_attr_u8(entry, ATTR_ORIG_L3PROTO) != context->family) return NFCT_CB_CONTINUE;
    if (!picket_ct_involves(context, entry)) return NFCT_CB_CONTINUE;
    int status;
    if (context->mask == 0) {
        status = nfct_query(context->destroyer, NFCT_Q_DESTROY, entry);
    } else {
        uint32_t old = nfct_attr_is_set(entry, ATTR_MARK) > 0 ? nfct_get_attr_u32(entry, ATTR_MARK) : 0;
        uint32_t mark = (old & ~context->mask) | (context->mark & context->mask);
        // An entry without labels (created before any rule used them) has no bit to clear.
        const struct nfct_bitmask *labels = context->clear_label >= 0 && nfct_attr_is_set(entry, ATTR_CONNLABELS) > 0
            ? nfct_get_attr(entry, ATTR_CONNLABELS) : NULL;
        int clear = labels != NULL && (unsigned)context->clear_label <= nfct_bitmask_maxbit(labels)
            && nfct_bitmask_test_bit(labels, (unsigned)context->clear_label);
        if (mark == old && !clear) return NFCT_CB_CONTINUE;
        // An update names the entry by its original tuple and carries only the new mark (and the
        // label bit: the kernel sets the labels to (old & ~mask) ^ value, so a mask of that one
        // bit and an empty value clear it and leave every other bit as it is).
        struct nf_conntrack *update = nfct_new();
        struct nfct_bitmask *value = clear ? nfct_bitmask_new(nfct_bitmask_maxbit(labels)) : NULL;
        struct nfct_bitmask *only = clear ? nfct_bitmask_new(nfct_bitmask_maxbit(labels)) : NULL;
        if (update == NULL || (clear && (value == NULL || only == NULL))) {
            if (update != NULL) nfct_destroy(update);
            if (value != NULL) nfct_bitmask_destroy(value);
            if (only != NULL) nfct_bitmask_destroy(only);
            context->result->step = PICKET_CT_STEP_DESTROY;
            context->result->error = ENOMEM;
            return NFCT_CB_STOP;
        }
        nfct_copy(update, entry, NFCT_CP_ORIG);
        nfct_set_attr_u32(update, ATTR_MARK, mark);
        if (clear) {
            nfct_bitmask_set_bit(only, (unsigned)context->clear_label);
            // The entry owns both bitmasks from here on (freed by nfct_destroy).
            nfct_set_attr(update, ATTR_CONNLABELS, value);
            nfct_set_attr(update, ATTR_CONNLABELS_MASK, only);
        }
        status = nfct_query(context->destroyer, NFCT_Q_UPDATE, update);
        nfct_destroy(update);
    }
    if (status == 0) {
        context->result->deleted++;
        return NFCT_CB_CONTINUE;
    }
    if (errno == ENOENT) {
        // Expired meanwhile, or dumped twice (the kernel restarts a hash bucket whose last
        // dumped entry is gone): not an error.
        context->result->vanished++;
        return NFCT_CB_CONTINUE;
    }
    context->result->step = PICKET_CT_STEP_DESTROY;
    context->result->error = errno;
    return NFCT_CB_STOP;
}

static int picket_ct_fail(picket_ct_result *result, picket_ct_step step, int error) {
    result->step = step;
    result->error = error;
    return -1;
}

int picket_ct_delete(int family, const uint8_t *addresses, size_t count, picket_ct_result *result) {
    return picket_ct_mark(family, addresses, count, 0, 0, -1, result);
}

int picket_ct_mark(int family, const uint8_t *addresses, size_t count, uint32_t mark, uint32_t mask, int clear_label,
                   picket_ct_result *result) {
    memset(result, 0, sizeof *result);
    if (family != AF_INET && family != AF_INET6) return picket_ct_fail(result, PICKET_CT_STEP_DUMP, EAFNOSUPPORT);
    if (count == 0) return 0;
    if (clear_label > 127 || (clear_label >= 0 && mask == 0)) return picket_ct_fail(result, PICKET_CT_STEP_DUMP, EINVAL);

    struct nfct_handle *dumper = nfct_open(CONNTRACK, 0);
    if (dumper == NULL) return picket_ct_fail(result, PICKET_CT_STEP_OPEN, errno);
    struct nfct_handle *destroyer = nfct_open(CONNTRACK, 0);
    if (destroyer == NULL) {
        int error = errno;
        nfct_close(dumper);
        return picket_ct_fail(result, PICKET_CT_STEP_OPEN, error);
    }

    struct picket_ct_context context = {
        .destroyer = destroyer,
        .mask = mask,
        .mark = mark,
        .clear_label = clear_label < 0 ? -1 : clear_label,
        .family = (uint8_t)family,
        .width = family == AF_INET ? 4 : 16,
        .addresses = addresses,
        .count = count,
        .result = result,
    };
    if (nfct_callback_register(dumper, NFCT_T_ALL, picket_ct_on_entry, &context) < 0) {
        picket_ct_fail(result, PICKET_CT_STEP_REGISTER, errno);
    } else {
        uint32_t dump_family = (uint32_t)family;
        if (nfct_query(dumper, NFCT_Q_DUMP, &dump_family) < 0 && result->step == PICKET_CT_STEP_NONE) {
            picket_ct_fail(result, PICKET_CT_STEP_DUMP, errno);
        }
    }
    nfct_close(destroyer);
    nfct_close(dumper);
    return result->step == PICKET_CT_STEP_NONE ? 0 : -1;
}
