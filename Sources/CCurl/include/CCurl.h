#pragma once
// Typed shim over libcurl for Picket's KubeClient.
//
// curl_easy_setopt and curl_easy_getinfo are variadic, so Swift cannot call them. This shim
// offers one non-variadic wrapper per argument kind (long, string, blob, slist, callback,
// user-data pointer); each maps onto exactly one libcurl call. Everything else (which options,
// in which order, errors as Swift values) lives in Swift. The multi interface
// (curl_multi_poll, curl_multi_wakeup) is not variadic and is used directly.

#include <curl/curl.h>
#include <stddef.h>

/// curl_easy_setopt with a long argument.
CURLcode picket_curl_set_long(CURL *handle, CURLoption option, long value);
/// curl_easy_setopt with a string argument (libcurl copies it).
CURLcode picket_curl_set_string(CURL *handle, CURLoption option, const char *value);
/// curl_easy_setopt with a curl_blob argument; libcurl copies the bytes (CURL_BLOB_COPY).
CURLcode picket_curl_set_blob(CURL *handle, CURLoption option, const void *data, size_t length);
/// curl_easy_setopt with a header list (kept by the caller until the transfer is done).
CURLcode picket_curl_set_slist(CURL *handle, CURLoption option, struct curl_slist *list);
/// curl_easy_setopt with a user-data pointer (CURLOPT_WRITEDATA, CURLOPT_HEADERDATA, ...).
CURLcode picket_curl_set_pointer(CURL *handle, CURLoption option, void *pointer);

/// The signature of CURLOPT_WRITEFUNCTION and CURLOPT_HEADERFUNCTION callbacks.
typedef size_t (*picket_curl_data_callback)(char *data, size_t size, size_t count, void *user);
/// curl_easy_setopt(CURLOPT_WRITEFUNCTION or CURLOPT_HEADERFUNCTION, callback).
CURLcode picket_curl_set_data_callback(CURL *handle, CURLoption option, picket_curl_data_callback callback);

/// curl_easy_getinfo with a long result.
CURLcode picket_curl_get_long(CURL *handle, CURLINFO info, long *value);
/// curl_easy_getinfo with a double result.
CURLcode picket_curl_get_double(CURL *handle, CURLINFO info, double *value);
