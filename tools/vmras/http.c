// SPDX-License-Identifier: GPL-2.0-or-later
#include <string.h>

#include "http.h"

/* Where the header block ends (after "\r\n\r\n" or "\n\n"), or 0. */
static size_t header_end(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

enum http_parse http_parse_request(const char *buf, size_t len, char *path, size_t path_len,
				   int *head)
{
	const char *sp1, *sp2, *eol;
	size_t n;

	if (!header_end(buf, len))
		return len >= HTTP_MAX_REQUEST ? HTTP_BAD : HTTP_INCOMPLETE;
	eol = memchr(buf, '\n', len);
	sp1 = memchr(buf, ' ', (size_t)(eol - buf));
	if (!sp1)
		return HTTP_BAD;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || eol - sp2 < 9 || memcmp(sp2 + 1, "HTTP/1.", 7) || sp2[8] < '0' || sp2[8] > '9')
		return HTTP_BAD;
	for (const char *c = buf; c < sp1; c++)
		if (*c < 'A' || *c > 'Z')
			return HTTP_BAD;
	if (sp1 == buf)
		return HTTP_BAD;
	n = (size_t)(sp2 - sp1 - 1);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)sp1[1 + i] <= ' ' || (unsigned char)sp1[1 + i] >= 0x7f)
			return HTTP_BAD;
	if (!n || sp1[1] != '/')
		return HTTP_BAD;
	{
		const char *q = memchr(sp1 + 1, '?', n);

		if (q)
			n = (size_t)(q - sp1 - 1);
	}
	if (n >= path_len)
		return HTTP_BAD;
	if (sp1 - buf == 3 && !memcmp(buf, "GET", 3))
		*head = 0;
	else if (sp1 - buf == 4 && !memcmp(buf, "HEAD", 4))
		*head = 1;
	else
		return HTTP_METHOD;
	memcpy(path, sp1 + 1, n);
	path[n] = '\0';
	return HTTP_OK;
}
