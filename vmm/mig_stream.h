/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration stream's framing and transports (what goes in the sections
 * is migration.c's business).
 *
 * A stream is a 16-byte preamble {char magic[8] = "VMRASMIG", u32 version,
 * u32 flags} and then sections, each a 24-byte header {u32 type, u32 id,
 * u64 length, u32 header_crc (crc32c of the 16 bytes before it), u32 pad 0}
 * followed by `length` payload bytes and a u32 crc32c of the payload. All
 * integers little-endian. A reader knows the largest length each type may
 * have (its caller says so) and refuses a longer one before reading it.
 *
 * Errors name the section type and the stream offset where it starts:
 * "section 3 (ram) at offset 123456: checksum mismatch".
 *
 * Transports (QEMU's URI syntax): "tcp:HOST:PORT" (HOST a name, IPv4, or
 * [IPv6]; empty: every address incoming, loopback outgoing), "unix:PATH",
 * "file:PATH" (created 0600). Outgoing connects (or creates and
 * truncates the file); incoming listens, accepts exactly one connection
 * and closes the listener (or opens the file read-only). A file is written
 * with plain sequential writes; mig_out_offset tells the writer where the
 * next byte lands, so a section can place page data at an aligned offset.
 *
 * Threads: a stream belongs to one thread at a time. mig_cancel may be
 * called from any thread (before mig_close): the blocked reader or writer
 * returns -ECANCELED soon (shutdown(2) on sockets; a file is checked
 * between writes), and so does every later call.
 *
 * A failed transfer or a malformed section leaves that direction of the
 * stream unusable: later calls in it return the same error (a reader
 * that met a bad section can still write its answer, and a writer whose
 * peer hung up can still read why). Misuse (reading past a section's
 * end, a section_end short of its length) is -EINVAL and changes nothing.
 * A socket stream can be read and written both ways (a return path);
 * a file only the way it was opened.
 */
#ifndef VMRAS_VMM_MIG_STREAM_H
#define VMRAS_VMM_MIG_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define MIG_MAGIC "VMRASMIG"
#define MIG_VERSION 2

struct mig_stream;

/* Section names for messages: the caller's table, indexed by type (NULL ok). */
void mig_set_section_names(struct mig_stream *s, const char *const *names, unsigned int n);

/*
 * Opening waits (connect, accept) check *cancel (when not NULL) every
 * 100 ms and return -ECANCELED once it is set. A file must be a regular
 * file. A host name is resolved with getaddrinfo, which no cancel stops.
 */
int mig_open_outgoing(const char *uri, const atomic_bool *cancel, struct mig_stream **out,
		      struct vmm_error *e);
/*
 * Incoming: bind and listen (tcp, unix: the socket file is created, and
 * removed again after accept) and accept one peer, waiting at most
 * timeout_ms (-1: forever); file: open it.
 */
int mig_open_incoming(const char *uri, int timeout_ms, const atomic_bool *cancel,
		      struct mig_stream **out, struct vmm_error *e);
/* Parse only: 0 if uri is tcp:/unix:/file: and well formed. */
int mig_uri_check(const char *uri, struct vmm_error *e);
/* An in-memory reader over buf (the fuzz target and tests). */
int mig_open_buffer(const void *buf, size_t len, struct mig_stream **out,
		    struct vmm_error *e);
/* Flushes what is buffered (ignoring errors: call mig_flush to see them). */
void mig_close(struct mig_stream *s);
void mig_cancel(struct mig_stream *s);
bool mig_is_file(const struct mig_stream *s);
/* A socket stream has something to read now (the peer spoke or hung up). */
bool mig_input_pending(const struct mig_stream *s);
/* The same, waiting up to timeout_ms for it (a sender between its own sends). */
bool mig_input_wait(const struct mig_stream *s, int timeout_ms);
/*
 * A peer that gave up on the stream: send what is buffered, end our
 * direction, and read and drop the rest until the other side closes (at
 * most timeout_ms), so that it is not stopped by a full socket before it
 * reads what we said. Sockets only.
 */
void mig_drain(struct mig_stream *s, int timeout_ms);

/*
 * A second writer of small whole sections (post-copy's page requests and
 * answers), from any thread while another thread reads the stream: only
 * once the stream's own writer has flushed and writes no more. Callers
 * are serialized; -EAGAIN (nothing sent) when the socket has no room,
 * else the frame goes whole. Sockets only. 0 or -errno.
 */
#define MIG_SMALL_MAX 512
int mig_send_small(struct mig_stream *s, uint32_t type, uint32_t id, const void *payload,
		   uint32_t len);

/*
 * Writer. The preamble is written (and sent) by mig_open_outgoing. Small
 * writes are buffered: a section is sent when the buffer fills, at the end
 * of a section at least as large as the buffer, before any read, on
 * mig_flush and on mig_close.
 */
int mig_write_section(struct mig_stream *s, uint32_t type, uint32_t id, const void *payload,
		      uint64_t len, struct vmm_error *e);
/* A large section in pieces: begin (length known), data..., end (writes the crc). */
int mig_section_begin(struct mig_stream *s, uint32_t type, uint32_t id, uint64_t len,
		      struct vmm_error *e);
int mig_section_data(struct mig_stream *s, const void *buf, size_t len, struct vmm_error *e);
int mig_section_end(struct mig_stream *s, struct vmm_error *e);
/* Send what is buffered now (a file: written); errors as for the writes. */
int mig_flush(struct mig_stream *s, struct vmm_error *e);
/* mig_flush, and for a file fsync(2) too: it is on disk when this returns 0. */
int mig_sync(struct mig_stream *s, struct vmm_error *e);
/* Where the next byte written lands (from the start of the stream). */
uint64_t mig_out_offset(const struct mig_stream *s);
/* Bytes written so far (== mig_out_offset) plus bytes read so far. */
uint64_t mig_bytes(const struct mig_stream *s);

/*
 * Reader. mig_open_incoming / mig_open_buffer check the preamble.
 * mig_read_header: the next section's header (checked: header crc, pad 0,
 * length <= max_len(type) as max_len returns; 0 for an unknown type is
 * refused). Then either mig_read_payload (whole, into a malloc'd buffer,
 * crc checked) or mig_read_data pieces + mig_read_end (crc checked at the
 * end; reading past the section's length is -EINVAL). The payload of an
 * empty section is NULL. -EPROTO (or -EIO on a transport error,
 * -ECANCELED, or -ENODATA at a clean end of stream before a header) with
 * e naming section and offset.
 */
struct mig_section {
	uint32_t type, id;
	uint64_t len;
	uint64_t offset;	/* of the section header in the stream */
};
typedef uint64_t (*mig_max_len_fn)(uint32_t type);
int mig_read_header(struct mig_stream *s, mig_max_len_fn max_len, struct mig_section *sec,
		    struct vmm_error *e);
int mig_read_payload(struct mig_stream *s, const struct mig_section *sec, void **payload,
		     struct vmm_error *e);
int mig_read_data(struct mig_stream *s, const struct mig_section *sec, void *buf, size_t len,
		  struct vmm_error *e);
int mig_read_end(struct mig_stream *s, const struct mig_section *sec, struct vmm_error *e);
/*
 * A file: skip the rest of the section, its checksum unchecked (a lazy
 * restore checks each page as it reads it instead). Sockets: -EINVAL.
 */
int mig_read_skip(struct mig_stream *s, const struct mig_section *sec, struct vmm_error *e);
/* A file stream's descriptor (-1 for sockets and buffers). */
int mig_file_fd(const struct mig_stream *s);
/* Where the next byte read comes from. */
uint64_t mig_in_offset(const struct mig_stream *s);

#endif
