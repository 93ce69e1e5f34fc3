#define _GNU_SOURCE // setns, CLONE_NEWNET
#include "CIPSet.h"

#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h> // before libipset/ipset.h, which uses FILE without including it
#include <stdlib.h>
#include <string.h>

#include <libipset/data.h>
#include <libipset/ipset.h>
#include <libipset/session.h>
#include <libipset/types.h>

/// Capacity of the failure message; libipset's own report buffer is IPSET_ERRORBUFLEN.
#define PICKET_IPSET_MESSAGE_CAPACITY (IPSET_ERRORBUFLEN + 256)

struct picket_ipset {
    struct ipset *ipset;
    /// The stream `picket_ipset_restore` is reading, or NULL.
    FILE *stream;
    /// Where the error callbacks jump to while `armed` (inside ipset_parse_stream).
    jmp_buf stop;
    bool armed;
    /// Whether a failure has been recorded since the current call began.
    bool failed;
    int status;
    long offset;
    char message[PICKET_IPSET_MESSAGE_CAPACITY];
    /// Output of the print callback (save listings), NUL-terminated.
    char *output;
    size_t output_length;
    size_t output_capacity;
    bool output_failed;
};

static void picket_ipset_reset_failure(picket_ipset *handle) {
    handle->failed = false;
    handle->status = 0;
    handle->offset = -1;
    handle->message[0] = '\0';
}

/// Records a failure (only the first one of a call) with a printf-style message.
static void picket_ipset_record(picket_ipset *handle, int status, const char *format, va_list args) {
    if (handle->failed) return;
    handle->failed = true;
    handle->status = status;
    handle->offset = handle->stream != NULL ? ftell(handle->stream) : -1;
    if (format != NULL) {
        vsnprintf(handle->message, sizeof handle->message, format, args);
    } else {
        handle->message[0] = '\0';
    }
}

static void picket_ipset_record_text(picket_ipset *handle, int status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    picket_ipset_record(handle, status, format, args);
    va_end(args);
}

/// Leaves ipset_parse_stream, as libipset's default callbacks leave the process.
static void picket_ipset_stop(picket_ipset *handle) {
    if (handle->armed) {
        handle->armed = false;
        longjmp(handle->stop, 1);
    }
}

/// libipset's "custom error" callback: parse errors, and (through the standard callback)
/// every error. libipset's default prints and exits; this one records and stops the run.
static int picket_ipset_custom_error(struct ipset *ipset, void *p, int status, const char *msg, ...) {
    (void)ipset;
    picket_ipset *handle = p;
    va_list args;
    va_start(args, msg);
    picket_ipset_record(handle, status, msg, args);
    va_end(args);
    picket_ipset_stop(handle);
    return -1;
}

/// libipset's "standard error" callback, called after a command whose session report is set.
/// Warnings are not failures (libipset's CLI exits 0 on them): they are dropped. Notices and
/// errors stop the run.
static int picket_ipset_standard_error(struct ipset *ipset, void *p) {
    picket_ipset *handle = p;
    struct ipset_session *session = ipset_session(ipset);
    enum ipset_err_type type = ipset_session_report_type(session);
    if (type == IPSET_WARNING) {
        ipset_session_report_reset(session);
        return 0;
    }
    if (type == IPSET_NO_ERROR) {
        picket_ipset_record_text(handle, IPSET_OTHER_PROBLEM, "%s", "libipset failed without a message");
    } else {
        picket_ipset_record_text(handle, IPSET_SESSION_PROBLEM, "%s", ipset_session_report_msg(session));
    }
    ipset_session_report_reset(session);
    picket_ipset_stop(handle);
    return -1;
}

/// libipset's print callback: appends to the handle's growable output buffer.
static int picket_ipset_print(struct ipset_session *session, void *p, const char *format, ...) {
    (void)session;
    picket_ipset *handle = p;
    if (handle->output_failed) return -1;
    va_list args, measure;
    va_start(args, format);
    va_copy(measure, args);
    int needed = vsnprintf(NULL, 0, format, measure);
    va_end(measure);
    if (needed < 0) {
        va_end(args);
        handle->output_failed = true;
        return -1;
    }
    size_t required = handle->output_length + (size_t)needed + 1;
    if (required > handle->output_capacity) {
        size_t capacity = handle->output_capacity == 0 ? 65536 : handle->output_capacity;
        while (capacity < required) capacity *= 2;
        char *grown = realloc(handle->output, capacity);
        if (grown == NULL) {
            va_end(args);
            handle->output_failed = true;
            return -1;
        }
        handle->output = grown;
        handle->output_capacity = capacity;
    }
    vsnprintf(handle->output + handle->output_length, (size_t)needed + 1, format, args);
    va_end(args);
    handle->output_length += (size_t)needed;
    return needed;
}

picket_ipset *picket_ipset_open(void) {
    picket_ipset *handle = calloc(1, sizeof *handle);
    if (handle == NULL) return NULL;
    picket_ipset_reset_failure(handle);
    ipset_load_types();
    handle->ipset = ipset_init();
    if (handle->ipset == NULL) {
        free(handle);
        return NULL;
    }
    if (ipset_custom_printf(handle->ipset, picket_ipset_custom_error, picket_ipset_standard_error,
                            picket_ipset_print, handle) < 0) {
        ipset_fini(handle->ipset);
        free(handle);
        return NULL;
    }
    return handle;
}

void picket_ipset_close(picket_ipset *handle) {
    if (handle == NULL) return;
    ipset_fini(handle->ipset);
    free(handle->output);
    free(handle);
}

void picket_ipset_forget_cached_sets(void) {
    ipset_cache_fini();
}

/// Records the session's report as the failure of a direct session call, and clears it.
static int picket_ipset_session_failure(picket_ipset *handle, const char *fallback) {
    struct ipset_session *session = ipset_session(handle->ipset);
    const char *report = ipset_session_report_msg(session);
    handle->failed = false; // a direct call's failure replaces any earlier one
    picket_ipset_record_text(handle, IPSET_SESSION_PROBLEM, "%s",
                             report != NULL && report[0] != '\0' ? report : fallback);
    ipset_session_report_reset(session);
    return -1;
}

int picket_ipset_probe(picket_ipset *handle) {
    picket_ipset_reset_failure(handle);
    struct ipset_session *session = ipset_session(handle->ipset);
    if (ipset_cmd(session, IPSET_CMD_NONE, 0) < 0 ||
        ipset_session_report_type(session) > IPSET_WARNING) {
        return picket_ipset_session_failure(handle, "Cannot open session to kernel.");
    }
    ipset_session_report_reset(session);
    return 0;
}

int picket_ipset_restore(picket_ipset *handle, const char *text, size_t length) {
    picket_ipset_reset_failure(handle);
    if (length == 0) return 0; // fmemopen rejects an empty buffer
    FILE *stream = fmemopen((void *)text, length, "r");
    if (stream == NULL) {
        picket_ipset_record_text(handle, IPSET_OTHER_PROBLEM, "fmemopen: %s", strerror(errno));
        return -1;
    }
    handle->stream = stream;
    if (setjmp(handle->stop) == 0) {
        handle->armed = true;
        int result = ipset_parse_stream(handle->ipset, stream);
        handle->armed = false;
        if (result < 0 && !handle->failed) {
            picket_ipset_record_text(handle, IPSET_OTHER_PROBLEM, "%s", "ipset_parse_stream failed without a message");
        }
    } else {
        // Stopped at the first error, mid-command: drop what the failed command left in the
        // session (element, options, report) so nothing of it is sent later.
        struct ipset_session *session = ipset_session(handle->ipset);
        ipset_data_reset(ipset_session_data(session));
        ipset_session_report_reset(session);
    }
    handle->stream = NULL;
    fclose(stream);
    return handle->failed ? -1 : 0;
}

int picket_ipset_commit(picket_ipset *handle) {
    struct ipset_session *session = ipset_session(handle->ipset);
    if (ipset_commit(session) < 0) {
        return picket_ipset_session_failure(handle, "Cannot send the buffered commands.");
    }
    return 0;
}

int picket_ipset_save(picket_ipset *handle) {
    picket_ipset_reset_failure(handle);
    handle->output_length = 0;
    handle->output_failed = false;
    if (handle->output != NULL) handle->output[0] = '\0';
    struct ipset_session *session = ipset_session(handle->ipset);
    if (ipset_session_output(session, IPSET_LIST_SAVE) < 0) {
        return picket_ipset_session_failure(handle, "Cannot select the save output mode.");
    }
    if (ipset_cmd(session, IPSET_CMD_SAVE, 0) < 0 ||
        ipset_session_report_type(session) > IPSET_WARNING) {
        return picket_ipset_session_failure(handle, "Cannot save the sets.");
    }
    ipset_session_report_reset(session);
    if (handle->output_failed) {
        picket_ipset_record_text(handle, IPSET_OTHER_PROBLEM, "%s", "Cannot grow the output buffer.");
        return -1;
    }
    return 0;
}

int picket_ipset_list_headers(picket_ipset *handle) {
    picket_ipset_reset_failure(handle);
    handle->output_length = 0;
    handle->output_failed = false;
    if (handle->output != NULL) handle->output[0] = '\0';
    struct ipset_session *session = ipset_session(handle->ipset);
    if (ipset_session_output(session, IPSET_LIST_PLAIN) < 0) {
        return picket_ipset_session_failure(handle, "Cannot select the plain output mode.");
    }
    ipset_envopt_set(session, IPSET_ENV_LIST_HEADER);
    if (ipset_cmd(session, IPSET_CMD_LIST, 0) < 0 ||
        ipset_session_report_type(session) > IPSET_WARNING) {
        return picket_ipset_session_failure(handle, "Cannot list the sets' headers.");
    }
    ipset_session_report_reset(session);
    if (handle->output_failed) {
        picket_ipset_record_text(handle, IPSET_OTHER_PROBLEM, "%s", "Cannot grow the output buffer.");
        return -1;
    }
    return 0;
}

const char *picket_ipset_output(const picket_ipset *handle, size_t *length) {
    *length = handle->output_length;
    return handle->output != NULL ? handle->output : "";
}

picket_ipset_failure_info picket_ipset_failure(const picket_ipset *handle) {
    picket_ipset_failure_info info = {
        .status = handle->status,
        .offset = handle->offset,
        .message = handle->message,
    };
    return info;
}

const int picket_clone_newnet = CLONE_NEWNET;

int picket_setns(int fd, int nstype) {
    return setns(fd, nstype);
}
