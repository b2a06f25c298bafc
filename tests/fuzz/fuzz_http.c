// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The exporter's request parser on arbitrary bytes, fed as it would be
 * read: whole, and cut at each of the last 64 lengths (a request arrives
 * in pieces; each piece is parsed anew). Whatever it says, a path it
 * returns is NUL-terminated, starts with '/', and fits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int head;

	if (size > HTTP_MAX_REQUEST)
		size = HTTP_MAX_REQUEST;
	for (size_t n = size > 64 ? size - 64 : 0; n <= size; n++) {
		char *copy = malloc(n ? n : 1);

		if (!copy)
			return 0;
		memcpy(copy, data, n);
		if (http_parse_request(copy, n, path, sizeof(path), &head) == HTTP_OK &&
		    (path[0] != '/' || strlen(path) >= sizeof(path) || (head != 0 && head != 1)))
			abort();
		free(copy);
	}
	return 0;
}
