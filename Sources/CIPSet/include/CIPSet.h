#pragma once
// Minimal shim over libipset 7.x for Picket's IPSetKit.
//
// libipset reports errors and prints listings through variadic C callbacks, and its default
// callbacks print to stderr and call exit(). This shim installs callbacks that format into
// buffers owned by a `picket_ipset` handle, and exposes plain, non-variadic functions that map
// onto libipset calls: ipset_init/ipset_fini, ipset_parse_stream over an in-memory FILE,
// ipset_commit, ipset_cmd(IPSET_CMD_SAVE). Everything else (line numbers, filtering, errors as
// Swift values, locking) lives in Swift. The libipset headers are included only by CIPSet.c, so
// Swift sees nothing but this file.
//
// libipset is not thread-safe (it keeps a process-wide set-type list and set cache): callers
// must serialise every call of every function here across the whole process.

#include <stddef.h>

/// One libipset handle (`struct ipset`) plus the buffers its callbacks write into.
typedef struct picket_ipset picket_ipset;

/// What a failed call left behind, filled by `picket_ipset_failure`.
typedef struct picket_ipset_failure_info {
    /// libipset's `enum ipset_exittype` passed to the custom error callback (1 other problem,
    /// 2 parameter problem, 3 version problem, 4 session problem), or 0 when libipset stopped
    /// without a message (its `quit` command).
    int status;
    /// Byte offset of the input stream when the failure was reported (the end of the line being
    /// read), or -1 when no stream was open.
    long offset;
    /// The message, NUL-terminated. libipset prefixes errors found while reading restore input
    /// with "Error in line N: " where it knows the line.
    const char *message;
} picket_ipset_failure_info;

/// ipset_init() plus ipset_custom_printf() with the shim's callbacks. Loads the set types once
/// per process (ipset_load_types). Returns NULL when out of memory.
picket_ipset *picket_ipset_open(void);

/// ipset_fini() and frees the shim's buffers. Accepts NULL.
void picket_ipset_close(picket_ipset *handle);

/// ipset_cache_fini(): forgets libipset's process-wide cache of set name -> set type, which
/// libipset fills on create and consults before every add/del/test. The cache is not refreshed
/// when a set is destroyed or recreated by anyone else, nor per network namespace.
void picket_ipset_forget_cached_sets(void);

/// ipset_cmd(IPSET_CMD_NONE): opens the netlink socket (in the network namespace of the calling
/// thread) and checks the kernel's protocol version. Returns 0, or -1 with a failure recorded.
int picket_ipset_probe(picket_ipset *handle);

/// Runs restore-format text through ipset_parse_stream on an fmemopen() stream over
/// `text[0..<length]`; on success everything has been sent (libipset commits at the end of the
/// stream). The first error stops the run: the callback longjmps out of libipset (where
/// libipset's own callback would exit()) and libipset's per-command state is reset; add/del
/// commands of earlier lines that libipset still buffers are NOT sent: call
/// `picket_ipset_commit`. Returns 0 when every line ran, or -1 with the failure recorded.
int picket_ipset_restore(picket_ipset *handle, const char *text, size_t length);

/// ipset_commit(): sends the add/del commands libipset still holds in its netlink buffer.
/// Returns 0, or -1 with the failure recorded (replacing any earlier one).
int picket_ipset_commit(picket_ipset *handle);

/// `ipset save` of every set: ipset_session_output(IPSET_LIST_SAVE) and ipset_cmd(SAVE),
/// printing into the handle's output buffer (cleared first). Returns 0, or -1 with the failure
/// recorded.
int picket_ipset_save(picket_ipset *handle);

/// `ipset list -terse` of every set: the headers only (name, type, revision, header options,
/// size in memory, references, number of entries), no members, in the plain output format,
/// into the handle's output buffer (cleared first). Returns 0, or -1 with the failure recorded.
int picket_ipset_list_headers(picket_ipset *handle);

/// The output captured by the last `picket_ipset_save` or `picket_ipset_list_headers`;
/// `*length` receives its byte count.
/// Valid until the next call on this handle.
const char *picket_ipset_output(const picket_ipset *handle, size_t *length);

/// The failure recorded by the last failing call on this handle.
picket_ipset_failure_info picket_ipset_failure(const picket_ipset *handle);

// Network namespaces. glibc declares setns() and CLONE_NEWNET only under _GNU_SOURCE, which
// Swift's Glibc module does not define, so they are re-exported here unchanged.

/// glibc's CLONE_NEWNET.
extern const int picket_clone_newnet;

/// glibc's setns(fd, nstype): moves the calling thread into the namespace `fd` refers to.
/// Returns 0, or -1 with errno set.
int picket_setns(int fd, int nstype);
