// SPDX-License-Identifier: GPL-2.0-or-later
/* vmras inject / vmras events: drive a running VM's memory errors over QMP. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "qmp_client.h"

static int get_u64(json_object *o, const char *k, uint64_t *v)
{
	json_object *x;

	if (!json_object_object_get_ex(o, k, &x) || !json_object_is_type(x, json_type_int))
		return -ENOENT;
	*v = json_object_get_uint64(x);
	return 0;
}

static const char *get_str(json_object *o, const char *k)
{
	json_object *x;

	return json_object_object_get_ex(o, k, &x) && json_object_is_type(x, json_type_string)
		       ? json_object_get_string(x) : "?";
}

/* One readable line for an event. */
static void print_event(json_object *ev, bool raw)
{
	json_object *data = NULL, *flags = NULL, *ar = NULL;
	const char *name = get_str(ev, "event");
	uint64_t gpa = 0, size = 0, vcpu = 0;

	if (raw) {
		puts(json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
		return;
	}
	json_object_object_get_ex(ev, "data", &data);
	if (!strcmp(name, "MEMORY_FAILURE") && data) {
		json_object_object_get_ex(data, "flags", &flags);
		if (flags)
			json_object_object_get_ex(flags, "action-required", &ar);
		get_u64(data, "gpa", &gpa);
		get_u64(data, "size", &size);
		printf("MEMORY_FAILURE %s at GPA 0x%" PRIx64 " (%" PRIu64 " bytes lost)",
		       ar && json_object_get_boolean(ar) ? "action-required" : "action-optional",
		       gpa, size);
		if (!get_u64(data, "vcpu", &vcpu))
			printf(" vCPU %" PRIu64, vcpu);
		printf(": %s -> %s, from %s%s%s\n", get_str(data, "recipient"),
		       get_str(data, "action"), get_str(data, "source"),
		       *get_str(data, "detail") ? "; " : "", get_str(data, "detail"));
	} else if (!strcmp(name, "VMRAS_GUEST_REPORT") && data) {
		get_u64(data, "vcpu", &vcpu);
		printf("GUEST vCPU %" PRIu64 " %s", vcpu, get_str(data, "kind"));
		if (!get_u64(data, "gpa", &gpa))
			printf(" GPA 0x%" PRIx64, gpa);
		if (!get_u64(data, "pass", &size))
			printf(" pass %" PRIu64, size);
		putchar('\n');
	} else {
		printf("%s %s\n", name, data ? json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN) : "");
	}
	fflush(stdout);
}

static int connect_or_say(const char *cmd, const char *path, struct qmp_client **c)
{
	const char *why;
	int r;

	if (!path) {
		tool_error(cmd, "--control SOCK is required");
		return 2;
	}
	r = qmpc_connect(path, c, &why);
	if (r) {
		tool_error(cmd, "%s %s: %s", why, path, qmpc_strerror(r));
		return 1;
	}
	return 0;
}

int events_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = NULL;
	long count = -1, timeout = -1;
	bool raw = false;
	struct qmp_client *c;
	int opt, r;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'n': count = strtol(optarg, NULL, 10); break;
		case 't': timeout = strtol(optarg, NULL, 10); break;
		case 'j': raw = true; break;
		case 'h':
			printf("Usage: %s events --control SOCK [--count N] [--timeout SECONDS] [--json]\n"
			       "Print the VM's events as they come (one line each, or raw JSON).\n",
			       prog);
			return 0;
		default: return 2;
		}
	}
	r = connect_or_say("events", path, &c);
	if (r)
		return r;
	for (long n = 0; count < 0 || n < count; n++) {
		json_object *ev;

		r = qmpc_next_event(c, timeout < 0 ? -1 : (int)(timeout * 1000), &ev);
		if (r == -ETIMEDOUT || r == -ECONNRESET)
			break;
		if (r) {
			tool_error("events", "reading %s: %s", path, qmpc_strerror(r));
			qmpc_close(c);
			return 1;
		}
		print_event(ev, raw);
		json_object_put(ev);
	}
	qmpc_close(c);
	return 0;
}

int inject_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "gpa", required_argument, NULL, 'g' },
		{ "type", required_argument, NULL, 't' },
		{ "vcpu", required_argument, NULL, 'v' },
		{ "no-signal", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = NULL, *type = NULL, *desc;
	json_object *args = json_object_new_object(), *ret = NULL;
	bool no_signal;
	struct qmp_client *c;
	char *end;
	int opt, r;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'g':
			errno = 0;
			json_object_object_add(args, "gpa",
					       json_object_new_uint64(strtoull(optarg, &end, 0)));
			if (errno || *end || end == optarg) {
				tool_error("inject", "--gpa: not an address: '%s'", optarg);
				json_object_put(args);
				return 2;
			}
			break;
		case 't': type = optarg; break;
		case 'v':
			json_object_object_add(args, "vcpu", json_object_new_int(atoi(optarg)));
			break;
		case 'n': json_object_object_add(args, "signal", json_object_new_boolean(0)); break;
		case 'h':
			printf("Usage: %s inject --control SOCK --gpa ADDR --type ao|ar [--vcpu N] [--no-signal]\n"
			       "Poison the page for real and deliver the SIGBUS the kernel would; print\n"
			       "what vmras did about it. --no-signal: poison only (the guest's next touch\n"
			       "is the action-required error).\n", prog);
			json_object_put(args);
			return 0;
		default:
			json_object_put(args);
			return 2;
		}
	}
	if (!type || !json_object_object_get_ex(args, "gpa", NULL)) {
		tool_error("inject", "--gpa and --type are required");
		json_object_put(args);
		return 2;
	}
	json_object_object_add(args, "type", json_object_new_string(type));
	r = connect_or_say("inject", path, &c);
	if (r) {
		json_object_put(args);
		return r;
	}
	/* qmpc_execute takes args: what is needed of them afterwards, first. */
	no_signal = json_object_object_get_ex(args, "signal", NULL);
	r = qmpc_execute(c, "inject-memory-error", args, &ret, &desc);
	if (r) {
		tool_error("inject", "inject-memory-error: %s", r == -EPROTO ? desc : qmpc_strerror(r));
		qmpc_close(c);
		return 1;
	}
	json_object_put(ret);
	/* What became of it: the MEMORY_FAILURE event (an AR waits for the guest's touch). */
	for (;;) {
		json_object *ev;

		r = qmpc_next_event(c, 10000, &ev);
		if (r == -ETIMEDOUT) {
			printf("injected; no MEMORY_FAILURE event within 10 s%s\n",
			       no_signal ? " (the guest has not touched the page yet)" : "");
			break;
		}
		if (r) {
			tool_error("inject", "injected, then waiting for its MEMORY_FAILURE event: %s",
				   qmpc_strerror(r));
			qmpc_close(c);
			return 1;
		}
		if (!strcmp(get_str(ev, "event"), "MEMORY_FAILURE")) {
			print_event(ev, false);
			json_object_put(ev);
			break;
		}
		json_object_put(ev);
	}
	qmpc_close(c);
	return 0;
}
