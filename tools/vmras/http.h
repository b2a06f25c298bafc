/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The exporter's HTTP: one request line and headers, read whole, parsed
 * here (outside input: the fuzz target tests/fuzz/fuzz_http.c runs it).
 */
#ifndef VMRAS_TOOL_HTTP_H
#define VMRAS_TOOL_HTTP_H

#include <stddef.h>

#define HTTP_MAX_REQUEST 8192

enum http_parse {
	HTTP_INCOMPLETE,	/* no blank line yet: read more */
	HTTP_OK,		/* a GET (or HEAD) of path */
	HTTP_BAD,		/* malformed: 400 */
	HTTP_METHOD,		/* another method: 405 */
};

/*
 * buf[0..len) as read so far. On HTTP_OK, path (NUL-terminated, the query
 * string cut off) and *head (a HEAD request) are set.
 */
enum http_parse http_parse_request(const char *buf, size_t len, char *path, size_t path_len,
				   int *head);

#endif
