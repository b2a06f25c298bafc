// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A QMP session (vmm/qmp.c) without a socket: what a client sends, what it
 * gets back, and where a hostile client is stopped.
 *   1. negotiation, commands, ids, pipelining, errors with their classes
 *   2. parse errors resynchronise at the next newline, across reads
 *   3. nesting: 16 levels are parsed, 17 are refused, the line is skipped;
 *      a message may hold 1024 containers and members, not more
 *   4. a message longer than 64 KiB, and garbage without a newline for
 *      64 KiB, end the session after one error; whitespace between
 *      messages (keep-alives) never does
 *   5. a client that reads nothing: its output stops at 1 MiB and the
 *      session ends with the reason; events are queued only once it has
 *      negotiated
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp.h"
#include "tap.h"

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p) {
		fprintf(stderr, "test_qmp: out of memory\n");
		exit(1);
	}
	return p;
}

static int echo_calls;

static int cmd_echo(void *ctx, json_object *args, json_object **ret, struct qmp_error *err)
{
	static const char *const allowed[] = { "n", "s", NULL };
	uint64_t n = 0;
	const char *str = NULL;

	(void)ctx;
	if (qmp_args_only(args, allowed, err) || qmp_arg_u64(args, "n", false, &n, err) ||
	    qmp_arg_str(args, "s", false, &str, err))
		return -1;
	echo_calls++;
	*ret = json_object_new_object();
	json_object_object_add(*ret, "n", json_object_new_uint64(n));
	return 0;
}

static int cmd_fail(void *ctx, json_object *args, json_object **ret, struct qmp_error *err)
{
	(void)ctx, (void)args, (void)ret;
	qmp_errorf(err, "DeviceNotActive", "it failed");
	return -1;
}

static const struct qmp_command cmds[] = {
	{ "echo", cmd_echo },
	{ "fail", cmd_fail },
};

static struct qmp_session sess;

static void start(bool negotiate)
{
	qmp_session_fini(&sess);
	if (qmp_session_init(&sess, cmds, 2, NULL)) {
		fprintf(stderr, "qmp_session_init: no memory\n");
		exit(1);
	}
	qmp_session_greet(&sess);
	if (negotiate)
		qmp_session_input(&sess, "{\"execute\": \"qmp_capabilities\"}\n", 32);
	sess.out_len = sess.out_off = 0;
}

static size_t pending(void)
{
	size_t len;

	qmp_session_pending(&sess, &len);
	return len;
}

static void feed(const char *s)
{
	qmp_session_input(&sess, s, strlen(s));
}

/* The lines the session queued since the last call, parsed. */
static int replies(json_object **out, int max)
{
	int n = 0;
	size_t len;
	char *p = (char *)qmp_session_pending(&sess, &len), *start = p, *end = p + len;

	while (p < end && n < max) {
		char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!nl)
			break;
		*nl = '\0';
		out[n++] = json_tokener_parse(p);
		p = nl + 1;
	}
	qmp_session_sent(&sess, (size_t)(p - start));
	return n;
}

/* The one reply's error class ("" for a return, "?" for none or several). */
static const char *one_class(char *desc, size_t len)
{
	static char cls[64];
	json_object *r[4], *e, *x;
	int n = replies(r, 4);

	snprintf(cls, sizeof(cls), "?");
	if (desc)
		snprintf(desc, len, "%s", "");
	if (n == 1 && json_object_object_get_ex(r[0], "error", &e)) {
		if (json_object_object_get_ex(e, "class", &x))
			snprintf(cls, sizeof(cls), "%s", json_object_get_string(x));
		if (desc && json_object_object_get_ex(e, "desc", &x))
			snprintf(desc, len, "%s", json_object_get_string(x));
	} else if (n == 1 && json_object_object_get_ex(r[0], "return", &e)) {
		cls[0] = '\0';
	}
	for (int i = 0; i < n; i++)
		json_object_put(r[i]);
	return cls;
}

static void test_commands(void)
{
	json_object *r[8], *x;
	char desc[256];
	int n;

	start(false);
	qmp_session_greet(&sess);
	n = replies(r, 8);
	ok(n == 1 && json_object_object_get_ex(r[0], "QMP", &x), "the greeting is one QMP object");
	while (n)
		json_object_put(r[--n]);
	feed("{\"execute\": \"echo\"}\n");
	is_str(one_class(NULL, 0), "CommandNotFound", "a command before qmp_capabilities");
	feed("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n");
	is_str(one_class(desc, sizeof(desc)), "GenericError", "qmp_capabilities enabling oob, "
	       "which is not offered: %s", desc);
	feed("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": []}}\n");
	is_str(one_class(NULL, 0), "", "qmp_capabilities with nothing to enable");
	feed("{\"execute\": \"qmp_capabilities\"}\n");
	is_str(one_class(NULL, 0), "CommandNotFound", "qmp_capabilities twice");
	feed("{\"execute\": \"nope\"}\n");
	is_str(one_class(NULL, 0), "CommandNotFound", "an unknown command");
	feed("{\"execute\": \"fail\"}");
	is_str(one_class(NULL, 0), "DeviceNotActive", "a command's own error class is kept");
	feed("{\"execute\": \"echo\", \"arguments\": {\"n\": -1}}\n");
	is_str(one_class(desc, sizeof(desc)), "GenericError", "a negative integer: %s", desc);
	feed("{\"execute\": \"echo\", \"arguments\": {\"x\": 1}}\n");
	is_str(one_class(desc, sizeof(desc)), "GenericError", "an unexpected argument: %s", desc);
	feed("{\"execute\": \"echo\", \"arguments\": [1]}\n");
	is_str(one_class(NULL, 0), "GenericError", "arguments not an object");
	feed("{\"execute\": \"echo\", \"extra\": 1}\n");
	is_str(one_class(NULL, 0), "GenericError", "an unexpected member");
	feed("[\"execute\"]\n");
	is_str(one_class(NULL, 0), "GenericError", "not an object");

	echo_calls = 0;
	feed("{\"execute\": \"echo\", \"id\": 1}{\"execute\": \"echo\", \"id\": 2}\n"
	     "{\"execute\": \"echo\", \"id\": [3]}");
	n = replies(r, 8);
	ok(n == 3 && echo_calls == 3, "three pipelined commands, three answers (%d)", n);
	for (int i = 0; i < n; i++) {
		json_object *id = NULL;

		json_object_object_get_ex(r[i], "id", &id);
		ok(id != NULL, "answer %d carries its id %s", i + 1,
		   id ? json_object_to_json_string(id) : "(none)");
		json_object_put(r[i]);
	}
	/* An error's text cut short is cut between characters, never inside one. */
	{
		struct qmp_error e;
		char name[600];
		size_t len;
		bool whole = true;

		for (size_t i = 0; i + 2 < sizeof(name); i += 2)
			memcpy(name + i, "\xc3\xa9", 2);
		name[sizeof(name) - 2] = '\0';
		qmp_errorf(&e, "GenericError", "x%s", name);
		len = strlen(e.desc);
		for (size_t i = 1; i < len; i += 2)
			whole &= (unsigned char)e.desc[i] == 0xc3 && (unsigned char)e.desc[i + 1] == 0xa9;
		ok(len < sizeof(e.desc) && len % 2 == 1 && whole,
		   "a 600-byte error text cut to %zu bytes, between characters", len);
	}
	/* A message split over many reads, one byte each. */
	{
		const char *m = "{\"execute\": \"echo\", \"arguments\": {\"n\": 7}}\n";

		for (size_t i = 0; m[i]; i++)
			qmp_session_input(&sess, m + i, 1);
		is_str(one_class(NULL, 0), "", "a message fed one byte at a time");
	}
}

static void test_resync(void)
{
	json_object *r[8];
	int n;

	start(true);
	echo_calls = 0;
	feed("{\"execute\": \"echo\"}}} junk {\"execute\": \"echo\"}\n{\"execute\": \"echo\"}\n");
	n = replies(r, 8);
	ok(n == 3 && echo_calls == 2,
	   "garbage after a command: it ran, one parse error, the rest of the line skipped, "
	   "the next line ran (%d replies, %d ran)", n, echo_calls);
	while (n)
		json_object_put(r[--n]);
	echo_calls = 0;
	feed("{\"execute\": \"echo\" x");
	feed("more garbage in a later read {\"execute\": \"echo\"}");
	feed(" still the same line\n{\"execute\": \"echo\"}\n");
	n = replies(r, 8);
	ok(n == 2 && echo_calls == 1, "skipping goes on across reads until the newline "
	   "(%d replies, %d ran)", n, echo_calls);
	while (n)
		json_object_put(r[--n]);
	ok(!sess.closed, "parse errors do not end the session");

	/* QMP's resynchronisation: a control character or 0xFF ends skipping too. */
	echo_calls = 0;
	feed("{\"execute\": x \x01{\"execute\": \"echo\"}");
	feed("{\"execute\": x \xff{\"execute\": \"echo\"}");
	n = replies(r, 8);
	ok(n == 4 && echo_calls == 2, "skipping ends at a control character and at 0xFF, "
	   "without a newline (%d replies, %d ran)", n, echo_calls);
	while (n)
		json_object_put(r[--n]);
	/* Strings of invalid UTF-8 are refused: what is echoed back stays valid JSON. */
	feed("{\"execute\": \"ec\xc3ho\"}\n");
	is_str(one_class(NULL, 0), "GenericError", "a command name that is not UTF-8: a parse error");
	feed("{\"execute\": \"\xc3\xa9" "cho\"}\n");
	is_str(one_class(NULL, 0), "CommandNotFound", "a UTF-8 command name: not found");
}

static void test_values(void)
{
	char desc[256], *m;
	size_t n = 0;

	/* json-c builds the objects as the bytes come: their count is what bounds memory. */
	start(true);
	m = xmalloc(64 << 10);
	n = (size_t)sprintf(m, "{\"execute\": \"echo\", \"id\": [");
	while (n + 3 < (60u << 10)) {
		memcpy(m + n, "{},", 3);
		n += 3;
	}
	qmp_session_input(&sess, m, n);
	is_str(one_class(desc, sizeof(desc)), "GenericError", "60 KiB of '{},' in one message: %s",
	       desc);
	ok(sess.closed && strstr(sess.why, "values"), "and the client is cut off: %s", sess.why);
	/* Commas and brackets inside strings are not values. */
	start(true);
	n = (size_t)sprintf(m, "{\"execute\": \"echo\", \"arguments\": {\"s\": \"");
	while (n + 3 < (60u << 10)) {
		memcpy(m + n, "{,[", 3);
		n += 3;
	}
	n += (size_t)sprintf(m + n, "\\\"\"}}\n");
	qmp_session_input(&sess, m, n);
	is_str(one_class(desc, sizeof(desc)), "", "60 KiB of '{,[' inside a string (and an "
	       "escaped quote) is one value: %s", desc);
	free(m);
}

static char *nested(int depth)
{
	static const char head[] = "{\"execute\": \"echo\", \"arguments\": {\"s\": \"x\"}, \"id\": ";
	char *s = xmalloc((size_t)depth * 2 + sizeof(head) + 4);
	size_t n;

	memcpy(s, head, sizeof(head) - 1);
	n = sizeof(head) - 1;
	for (int i = 0; i < depth - 1; i++)
		s[n++] = '[';
	for (int i = 0; i < depth - 1; i++)
		s[n++] = ']';
	strcpy(s + n, "}\n");
	return s;
}

static void test_depth(void)
{
	char desc[256], *m;

	start(true);
	m = nested(QMP_MAX_DEPTH);
	feed(m);
	free(m);
	is_str(one_class(NULL, 0), "", "%d levels of nesting are parsed", QMP_MAX_DEPTH);
	m = nested(QMP_MAX_DEPTH + 1);
	feed(m);
	free(m);
	is_str(one_class(desc, sizeof(desc)), "GenericError", "%d levels are refused: %s",
	       QMP_MAX_DEPTH + 1, desc);
	ok(strstr(desc, "nesting depth") != NULL, "the error says it was the nesting");
	/* json-c counts the scalar inside the innermost container as a level too. */
	feed("{\"execute\": \"echo\", \"id\": [[[[[[[[[[[[[[1]]]]]]]]]]]]]]}\n");
	is_str(one_class(NULL, 0), "", "15 levels with a number innermost are parsed");
	feed("{\"execute\": \"echo\", \"id\": [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]}\n");
	is_str(one_class(NULL, 0), "GenericError", "16 with a number innermost are not");
	m = xmalloc(1 << 20);
	memset(m, '[', (1 << 20) - 2);
	strcpy(m + (1 << 20) - 2, "\n");
	feed(m);
	free(m);
	ok(sess.closed && strstr(sess.why, "garbage"),
	   "a million '[' without a newline: one error, then cut off (%s)", sess.why);
}

static void test_long(void)
{
	char desc[256], *m;
	size_t big = 100u << 20, fed = 0;

	/* 100 MiB of one string, in 64 KiB reads, as the server would read them. */
	start(true);
	m = xmalloc(64 << 10);
	memset(m, 'a', 64 << 10);
	feed("{\"execute\": \"echo\", \"arguments\": {\"s\": \"");
	while (fed < big && !sess.closed) {
		qmp_session_input(&sess, m, 64 << 10);
		fed += 64 << 10;
	}
	is_str(one_class(desc, sizeof(desc)), "GenericError", "a 100 MiB message: %s", desc);
	ok(sess.closed && fed <= 2 * QMP_MAX_MESSAGE, "cut off after %zu bytes: %s", fed,
	   sess.why);

	/* Garbage: the same after the parse error. */
	start(true);
	m[0] = '}';
	for (fed = 0; fed < big && !sess.closed; fed += 64 << 10)
		qmp_session_input(&sess, m, 64 << 10);
	ok(sess.closed && strstr(sess.why, "garbage") && fed <= 2 * QMP_MAX_MESSAGE,
	   "100 MiB of garbage without a newline: cut off after %zu bytes (%s)", fed, sess.why);

	/* Whitespace between messages is free. */
	start(true);
	memset(m, '\n', 64 << 10);
	for (fed = 0; fed < (8u << 20); fed += 64 << 10)
		qmp_session_input(&sess, m, 64 << 10);
	memset(m, ' ', 64 << 10);
	for (int i = 0; i < 16; i++)
		qmp_session_input(&sess, m, 64 << 10);
	feed("{\"execute\": \"echo\"}\n");
	ok(!sess.closed && !strcmp(one_class(NULL, 0), ""),
	   "8 MiB of newlines and 1 MiB of spaces between messages: still served");
	free(m);
}

static void test_backlog(void)
{
	static const char ev[] = "{\"event\": \"X\", \"data\": {}}\r\n";
	size_t peak = 0, n = 0;

	start(false);
	qmp_session_event(&sess, ev, sizeof(ev) - 1);
	is_int((int)pending(), 0, "no event before qmp_capabilities");
	feed("{\"execute\": \"qmp_capabilities\"}\n");
	sess.out_len = sess.out_off = 0;
	while (!sess.closed && n < 1000000) {
		qmp_session_event(&sess, ev, sizeof(ev) - 1);
		if (pending() > peak)
			peak = pending();
		n++;
	}
	ok(sess.closed && peak <= QMP_MAX_BACKLOG,
	   "a client that reads no events: cut off after %zu of them, %zu bytes held at most",
	   n, peak);
	ok(strstr(sess.why, "did not read") != NULL, "with the reason: %s", sess.why);
	is_int((int)pending(), 0, "and no half message is left to send");

	start(true);
	for (n = 0; !sess.closed && n < 1000000; n++)
		feed("{\"execute\": \"echo\"}");
	ok(sess.closed && strstr(sess.why, "did not read"),
	   "a client that sends commands and reads no answers: cut off after %zu", n);
	feed("{\"execute\": \"echo\"}");
	is_int((int)pending(), 0, "nothing more is queued once the session has ended");
}

int main(void)
{
	test_commands();
	test_resync();
	test_depth();
	test_values();
	test_long();
	test_backlog();
	qmp_session_fini(&sess);
	return tap_done();
}
