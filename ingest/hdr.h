/* Parsers for the request headers ingest reads: request ids, Prefer, If-Match, traceparent,
 * client timestamps, content types, bearer credentials, idempotency keys. Pure: no libevent,
 * so the cmocka tests reach every rule. A header that fails its check is ignored or answered
 * with a problem by the caller; these functions only decide. */
#ifndef INGEST_HDR_H
#define INGEST_HDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HDR_REQUEST_ID_MAX 64 /* buffer size: 63 characters and the NUL (the envelope's) */
#define HDR_IDEM_KEY_MAX   255

/* A client's X-Request-Id is reused when it is 1..63 characters of [A-Za-z0-9._:-]; anything
 * else (spaces, quotes, control bytes that would break a log line) gets a fresh id. */
bool hdr_request_id_ok(const char *s);

/* Prefer (RFC 7240): finds wait=N among the comma-separated preferences. Returns true with
 * *secs set when one is there (N a whole number 0..86400; a larger N counts as 86400), false
 * when none is. Other preferences are ignored. */
bool hdr_prefer_wait(const char *prefer, long *secs);

/* If-Match with one entity tag naming a version: "3" or W/"3" (the tag is the row version,
 * a positive integer). 0 with *version set, -1 when the header is anything else. */
int hdr_if_match(const char *s, int64_t *version) __attribute__((warn_unused_result));

/* W3C trace context, version 00 form: 00-<32 hex>-<16 hex>-<2 hex>, lower case, ids not all
 * zero; any version but ff is accepted as long as the first four fields have that form. */
bool hdr_traceparent_ok(const char *s);

/* An RFC 3339 timestamp: YYYY-MM-DDTHH:MM:SS, optional fraction, then Z or +hh:mm/-hh:mm;
 * 't', 'z' and a space for T are accepted; the fields are range-checked. */
bool hdr_rfc3339_ok(const char *s);

/* application/json or application/<x>+json, any parameters, case-insensitive. */
bool hdr_json_content_type(const char *ct);

/* The token of "Bearer <token>" (scheme case-insensitive, spaces around it skipped), or NULL
 * when the header is absent, another scheme, or empty. Points into authz. */
const char *hdr_bearer(const char *authz);

/* 1..255 visible ASCII characters. */
bool hdr_idempotency_key_ok(const char *s);

/* Formats unix seconds as RFC 3339 UTC ("2026-11-24T16:00:00Z"); out of at least 32 bytes. */
void hdr_rfc3339_utc(int64_t unix_secs, char *out, size_t outlen);

#endif
