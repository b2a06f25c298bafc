// SPDX-License-Identifier: GPL-2.0-or-later
/* QMP's protocol for one client, without I/O (see qmp.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp.h"

void qmp_errorf(struct qmp_error *err, const char *cls, const char *fmt, ...)
{
	va_list ap;
	int n;

	err->cls = cls;
	va_start(ap, fmt);
	n = vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
	va_end(ap);
	/* Cut short: not in the middle of a UTF-8 character (JSON must stay valid). */
	if (n >= (int)sizeof(err->desc)) {
		size_t end = sizeof(err->desc) - 1;

		while (end && ((unsigned char)err->desc[end - 1] & 0xc0) == 0x80)
			end--;
		if (end && (unsigned char)err->desc[end - 1] >= 0xc0)
			end--;
		err->desc[end] = '\0';
	}
}

/* ---- arguments ----------------------------------------------------- */

/* The member `name` of type `type`: 1 found, 0 absent and optional, -1 error. */
static int get_arg(json_object *args, const char *name, bool required, json_type type,
		   const char *type_name, json_object **out, struct qmp_error *err)
{
	if (!json_object_object_get_ex(args, name, out)) {
		if (!required)
			return 0;
		qmp_errorf(err, "GenericError", "Parameter '%s' is missing", name);
		return -1;
	}
	if (!*out || !json_object_is_type(*out, type)) {	/* null is no value */
		qmp_errorf(err, "GenericError",
			   "Invalid parameter type for '%s', expected: %s", name, type_name);
		return -1;
	}
	return 1;
}

int qmp_arg_u64(json_object *args, const char *name, bool required, uint64_t *out,
		struct qmp_error *err)
{
	json_object *v;
	int r = get_arg(args, name, required, json_type_int, "integer", &v, err);

	if (r <= 0)
		return r;
	/* json-c keeps integers above INT64_MAX as uint64. */
	if (json_object_get_int64(v) < 0) {
		qmp_errorf(err, "GenericError",
			   "Parameter '%s' expects a non-negative integer", name);
		return -1;
	}
	*out = json_object_get_uint64(v);
	return 0;
}

int qmp_arg_str(json_object *args, const char *name, bool required, const char **out,
		struct qmp_error *err)
{
	json_object *v;
	int r = get_arg(args, name, required, json_type_string, "string", &v, err);

	if (r <= 0)
		return r;
	*out = json_object_get_string(v);
	return 0;
}

int qmp_arg_bool(json_object *args, const char *name, bool required, bool *out,
		 struct qmp_error *err)
{
	json_object *v;
	int r = get_arg(args, name, required, json_type_boolean, "bool", &v, err);

	if (r <= 0)
		return r;
	*out = json_object_get_boolean(v);
	return 0;
}

int qmp_args_only(json_object *args, const char *const *allowed, struct qmp_error *err)
{
	json_object_object_foreach(args, key, val) {
		const char *const *a;

		(void)val;
		for (a = allowed; *a && strcmp(*a, key); a++)
			;
		if (!*a) {
			qmp_errorf(err, "GenericError", "Parameter '%s' is unexpected", key);
			return -1;
		}
	}
	return 0;
}

/* ---- a session's output ---------------------------------------------- */

static void session_close(struct qmp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void session_close(struct qmp_session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->closed)
		return;
	s->closed = true;
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
}

/* Queue text; a client with QMP_MAX_BACKLOG unread is not reading: it is cut off. */
static void queue(struct qmp_session *s, const char *text, size_t len)
{
	if (s->closed)
		return;
	if (s->out_len - s->out_off + len > QMP_MAX_BACKLOG) {
		/* Half a message would be worse than none: drop it all. */
		s->out_len = s->out_off = 0;
		session_close(s, "it did not read its output (%d bytes waiting)",
			      QMP_MAX_BACKLOG);
		return;
	}
	if (s->out_off && s->out_len + len > s->out_cap) {
		/* Sent bytes are dropped here, not at each send. */
		memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
		s->out_len -= s->out_off;
		s->out_off = 0;
	}
	if (s->out_len + len > s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap : 4096;
		char *p;

		while (cap < s->out_len + len)
			cap *= 2;
		p = realloc(s->out, cap);
		if (!p) {
			s->out_len = s->out_off = 0;
			session_close(s, "no memory for its output");
			return;
		}
		s->out = p;
		s->out_cap = cap;
	}
	memcpy(s->out + s->out_len, text, len);
	s->out_len += len;
}

static void send_json(struct qmp_session *s, json_object *o)
{
	size_t len;
	const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);

	if (!text) {
		s->out_len = s->out_off = 0;
		session_close(s, "no memory for its output");
		return;
	}
	queue(s, text, len);
	queue(s, "\r\n", 2);
}

static void send_error(struct qmp_session *s, const struct qmp_error *err, json_object *id)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();

	json_object_object_add(e, "class", json_object_new_string(err->cls));
	json_object_object_add(e, "desc", json_object_new_string(err->desc));
	json_object_object_add(o, "error", e);
	if (id)
		json_object_object_add(o, "id", json_object_get(id));
	send_json(s, o);
	json_object_put(o);
}

static void send_errorf(struct qmp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void send_errorf(struct qmp_session *s, const char *fmt, ...)
{
	struct qmp_error err = { .cls = "GenericError" };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err.desc, sizeof(err.desc), fmt, ap);
	va_end(ap);
	send_error(s, &err, NULL);
}

void qmp_session_sent(struct qmp_session *s, size_t n)
{
	s->out_off += n < s->out_len - s->out_off ? n : s->out_len - s->out_off;
	if (s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
}

void qmp_session_event(struct qmp_session *s, const char *text, size_t len)
{
	if (s->negotiated)
		queue(s, text, len);
}

/* ---- commands ------------------------------------------------------ */

/* qmp_capabilities {"enable": [...]}: this server offers none (QEMU's answer to one). */
static int capabilities_refused(json_object *args, struct qmp_error *err)
{
	static const char *const allowed[] = { "enable", NULL };
	json_object *enable, *cap;

	if (qmp_args_only(args, allowed, err))
		return -1;
	if (!json_object_object_get_ex(args, "enable", &enable))
		return 0;
	if (!json_object_is_type(enable, json_type_array)) {
		qmp_errorf(err, "GenericError", "Invalid parameter type for 'enable', expected: array");
		return -1;
	}
	if (!json_object_array_length(enable))
		return 0;
	cap = json_object_array_get_idx(enable, 0);
	if (json_object_is_type(cap, json_type_string))
		qmp_errorf(err, "GenericError", "Capability '%s' not available",
			   json_object_get_string(cap));
	else
		qmp_errorf(err, "GenericError", "Invalid parameter type for 'enable', "
			   "expected: array of strings");
	return -1;
}

static void dispatch(struct qmp_session *s, json_object *msg)
{
	struct qmp_error err = { 0 };
	json_object *id = NULL, *exec = NULL, *args = NULL, *ret = NULL, *o;
	const struct qmp_command *cmd = NULL;
	const char *name;

	if (!json_object_is_type(msg, json_type_object)) {
		qmp_errorf(&err, "GenericError", "QMP input must be a JSON object");
		send_error(s, &err, NULL);
		return;
	}
	json_object_object_get_ex(msg, "id", &id);
	json_object_object_foreach(msg, key, val) {
		(void)val;
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id")) {
			qmp_errorf(&err, "GenericError", "QMP input member '%s' is unexpected", key);
			send_error(s, &err, id);
			return;
		}
	}
	if (!json_object_object_get_ex(msg, "execute", &exec) ||
	    !json_object_is_type(exec, json_type_string)) {
		qmp_errorf(&err, "GenericError", "QMP input lacks member 'execute' (a string)");
		send_error(s, &err, id);
		return;
	}
	if (json_object_object_get_ex(msg, "arguments", &args) &&
	    !json_object_is_type(args, json_type_object)) {
		qmp_errorf(&err, "GenericError", "QMP input member 'arguments' must be an object");
		send_error(s, &err, id);
		return;
	}
	name = json_object_get_string(exec);
	if (strlen(name) != (size_t)json_object_get_string_len(exec)) {
		qmp_errorf(&err, "GenericError", "QMP input member 'execute' holds a NUL");
		send_error(s, &err, id);
		return;
	}
	if (!s->negotiated && strcmp(name, "qmp_capabilities")) {
		qmp_errorf(&err, "CommandNotFound",
			   "Expecting capabilities negotiation with 'qmp_capabilities'");
		send_error(s, &err, id);
		return;
	}
	if (!strcmp(name, "qmp_capabilities")) {
		if (s->negotiated) {
			qmp_errorf(&err, "CommandNotFound",
				   "Capabilities negotiation is already complete, command ignored");
			send_error(s, &err, id);
			return;
		}
		if (args && capabilities_refused(args, &err)) {
			send_error(s, &err, id);
			return;
		}
		s->negotiated = true;
	} else {
		for (size_t i = 0; i < s->ncmds; i++)
			if (!strcmp(s->cmds[i].name, name))
				cmd = &s->cmds[i];
		if (!cmd) {
			qmp_errorf(&err, "CommandNotFound", "The command %s has not been found", name);
			send_error(s, &err, id);
			return;
		}
	}

	if (cmd) {
		json_object *empty = args ? NULL : json_object_new_object();

		if (cmd->fn(s->ctx, args ? args : empty, &ret, &err)) {
			json_object_put(empty);
			if (!err.cls)
				qmp_errorf(&err, "GenericError", "%s failed", name);
			send_error(s, &err, id);
			return;
		}
		json_object_put(empty);
	}
	o = json_object_new_object();
	json_object_object_add(o, "return", ret ? ret : json_object_new_object());
	if (id)
		json_object_object_add(o, "id", json_object_get(id));
	send_json(s, o);
	json_object_put(o);
}

/* ---- input --------------------------------------------------------- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Where skipping after a parse error ends: QMP's resynchronisation. */
static bool ends_skipping(char c)
{
	return (unsigned char)c < 0x20 ? c != '\t' && c != '\r' : (unsigned char)c == 0xff;
}

/* A message ended (whole or not): the next byte starts another. */
static void message_reset(struct qmp_session *s)
{
	json_tokener_reset(s->tok);
	s->msg_bytes = 0;
	s->msg_values = 0;
	s->in_string = s->escaped = false;
	s->utf8_need = 0;
}

/*
 * The message's bytes as a scanner sees them, alongside json-c: it counts
 * what json-c will allocate for (objects, arrays and their members, one
 * per ',' outside strings), and checks that strings are UTF-8 (json-c's
 * own check works only on whole buffers, and bytes go in one at a time).
 */
enum scan { SCAN_OK, SCAN_TOO_MANY, SCAN_NOT_UTF8 };

static enum scan scan_byte(struct qmp_session *s, unsigned char c)
{
	if (s->utf8_need) {
		if (c < s->utf8_lo || c > s->utf8_hi)
			return SCAN_NOT_UTF8;
		s->utf8_need--;
		s->utf8_lo = 0x80;
		s->utf8_hi = 0xbf;
		return SCAN_OK;
	}
	if (s->in_string) {
		if (c >= 0x80) {
			/* Lead bytes and the range of the byte after (RFC 3629). */
			s->utf8_lo = 0x80;
			s->utf8_hi = 0xbf;
			if (c >= 0xc2 && c <= 0xdf) {
				s->utf8_need = 1;
			} else if (c >= 0xe0 && c <= 0xef) {
				s->utf8_need = 2;
				s->utf8_lo = c == 0xe0 ? 0xa0 : 0x80;
				s->utf8_hi = c == 0xed ? 0x9f : 0xbf;
			} else if (c >= 0xf0 && c <= 0xf4) {
				s->utf8_need = 3;
				s->utf8_lo = c == 0xf0 ? 0x90 : 0x80;
				s->utf8_hi = c == 0xf4 ? 0x8f : 0xbf;
			} else {
				return SCAN_NOT_UTF8;
			}
		} else if (s->escaped) {
			s->escaped = false;
		} else if (c == '\\') {
			s->escaped = true;
		} else if (c == '"') {
			s->in_string = false;
		}
		return SCAN_OK;
	}
	if (c == '"')
		s->in_string = true;
	else if (c == '{' || c == '[' || c == ',')
		return ++s->msg_values <= QMP_MAX_VALUES ? SCAN_OK : SCAN_TOO_MANY;
	return SCAN_OK;
}

/*
 * One byte into the tokener. Bytes go in one at a time so that each whole
 * message is dispatched as it completes: a strict tokener refuses anything
 * that follows a complete value in the same buffer, and a client may send
 * several commands in one write (QMP allows pipelining). Whitespace
 * between messages is not fed, so that it neither counts towards a
 * message's size nor, sent forever as keep-alives, cuts a client off.
 */
static void input_byte(struct qmp_session *s, char c)
{
	enum json_tokener_error jerr;
	json_object *msg;

	if (s->skipping) {
		if (ends_skipping(c)) {
			s->skipping = false;
			s->msg_bytes = 0;
		} else if (++s->msg_bytes > QMP_MAX_MESSAGE) {
			send_errorf(s, "JSON parse error, and no newline within %d bytes",
				    QMP_MAX_MESSAGE);
			session_close(s, "it sent %d bytes of garbage without a newline",
				      QMP_MAX_MESSAGE);
		}
		return;
	}
	if (!s->msg_bytes && is_space(c))
		return;
	switch (scan_byte(s, (unsigned char)c)) {
	case SCAN_TOO_MANY:
		send_errorf(s, "JSON message with more than %d values", QMP_MAX_VALUES);
		session_close(s, "it sent a message with more than %d values", QMP_MAX_VALUES);
		return;
	case SCAN_NOT_UTF8:
		msg = NULL;
		jerr = json_tokener_error_parse_utf8_string;
		break;
	default:
		msg = json_tokener_parse_ex(s->tok, &c, 1);
		jerr = json_tokener_get_error(s->tok);
		break;
	}
	if (jerr == json_tokener_continue) {
		if (++s->msg_bytes > QMP_MAX_MESSAGE) {
			send_errorf(s, "JSON message longer than %d bytes", QMP_MAX_MESSAGE);
			session_close(s, "it sent a message longer than %d bytes", QMP_MAX_MESSAGE);
		}
		return;
	}
	message_reset(s);
	if (jerr != json_tokener_success) {
		if (jerr == json_tokener_error_depth)
			send_errorf(s, "JSON nesting depth limit exceeded (%d levels)",
				    QMP_MAX_DEPTH);
		else
			send_errorf(s, "JSON parse error, %s", json_tokener_error_desc(jerr));
		/* Resynchronise after the next newline (or control character, or 0xFF). */
		s->skipping = !ends_skipping(c);
		return;
	}
	/* Fed one byte at a time, a value always ends on a byte of its own. */
	dispatch(s, msg);
	json_object_put(msg);
}

void qmp_session_input(struct qmp_session *s, const char *buf, size_t len)
{
	for (size_t i = 0; i < len && !s->closed; i++)
		input_byte(s, buf[i]);
}

/* ---- a session's life ------------------------------------------------ */

int qmp_session_init(struct qmp_session *s, const struct qmp_command *cmds, size_t ncmds,
		     void *ctx)
{
	*s = (struct qmp_session){ .cmds = cmds, .ncmds = ncmds, .ctx = ctx };
	s->tok = json_tokener_new_ex(QMP_MAX_DEPTH);
	if (!s->tok)
		return -ENOMEM;
	/* Strict JSON (UTF-8 is scan_byte's: what is echoed back stays valid). */
	json_tokener_set_flags(s->tok, JSON_TOKENER_STRICT);
	return 0;
}

void qmp_session_fini(struct qmp_session *s)
{
	if (s->tok)
		json_tokener_free(s->tok);
	free(s->out);
	*s = (struct qmp_session){ .closed = true };
}

void qmp_session_greet(struct qmp_session *s)
{
	json_object *g, *q, *v, *qv;

	qv = json_object_new_object();
	json_object_object_add(qv, "major", json_object_new_int(0));
	json_object_object_add(qv, "minor", json_object_new_int(1));
	json_object_object_add(qv, "micro", json_object_new_int(0));
	v = json_object_new_object();
	json_object_object_add(v, "qemu", qv);
	json_object_object_add(v, "package", json_object_new_string("vmras " VMRAS_VERSION));
	q = json_object_new_object();
	json_object_object_add(q, "version", v);
	json_object_object_add(q, "capabilities", json_object_new_array());
	g = json_object_new_object();
	json_object_object_add(g, "QMP", q);
	send_json(s, g);
	json_object_put(g);
}
