// SPDX-License-Identifier: GPL-2.0-or-later
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vmras/event.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const char *const source_names[] = {
	[VMRAS_SRC_SIGBUS] = "sigbus",
	[VMRAS_SRC_MEMORY_FAULT] = "kvm-memory-fault",
	[VMRAS_SRC_RAM_MMIO] = "ram-mmio",
	[VMRAS_SRC_INJECT] = "inject",
	[VMRAS_SRC_MIGRATION] = "migration",
	[VMRAS_SRC_MC_COPY] = "mc-safe-copy",
	[VMRAS_SRC_SALVAGE] = "salvage-read",
	[VMRAS_SRC_ARM_SEA] = "kvm-arm-sea",
};
_Static_assert(ARRAY_SIZE(source_names) == VMRAS_SRC_COUNT, "one name per source");

static const char *const action_names[] = {
	[VMRAS_ACTION_IGNORE] = "ignore",
	[VMRAS_ACTION_INJECT] = "inject",
	[VMRAS_ACTION_FATAL] = "fatal",
	[VMRAS_ACTION_RESET] = "reset",
};
_Static_assert(ARRAY_SIZE(action_names) == VMRAS_ACTION_COUNT, "one name per action");

const char *vmras_source_name(enum vmras_source s)
{
	return (unsigned int)s < VMRAS_SRC_COUNT ? source_names[s] : "unknown";
}

const char *vmras_action_name(enum vmras_action a)
{
	return (unsigned int)a < VMRAS_ACTION_COUNT ? action_names[a] : "unknown";
}

const char *vmras_recipient_name(enum vmras_recipient r)
{
	return r == VMRAS_RECIPIENT_GUEST ? "guest" : "hypervisor";
}

int vmras_action_parse(const char *s, enum vmras_action *a)
{
	for (unsigned int i = 0; i < VMRAS_ACTION_COUNT; i++)
		if (!strcmp(s, action_names[i])) {
			*a = (enum vmras_action)i;
			return 0;
		}
	return -EINVAL;
}

int vmras_failure_json(const struct vmras_failure *f, char *buf, size_t size)
{
	const struct vmras_event *e = &f->ev;
	char gpa[32] = "null", hva[32] = "null", vcpu[16] = "null", detail[160];
	const char *private = "null";
	size_t o = 0;
	int n;

	if (e->valid & VMRAS_EV_GPA)
		snprintf(gpa, sizeof(gpa), "%" PRIu64, e->gpa);
	if (e->valid & VMRAS_EV_HVA)
		snprintf(hva, sizeof(hva), "%" PRIu64, e->hva);
	if (e->valid & VMRAS_EV_VCPU)
		snprintf(vcpu, sizeof(vcpu), "%d", e->vcpu);
	/* detail is ours, but escape it anyway: quotes and control characters. */
	for (const char *s = f->detail; *s && o + 7 < sizeof(detail); s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			o += (size_t)snprintf(detail + o, sizeof(detail) - o, "\\%c", c);
		else if (c < 0x20)
			o += (size_t)snprintf(detail + o, sizeof(detail) - o, "\\u%04x", c);
		else
			detail[o++] = (char)c;
	}
	detail[o] = '\0';
	if (e->valid & VMRAS_EV_FAULT_FLAGS)
		private = e->fault_flags & VMRAS_FAULT_PRIVATE ? "true" : "false";
	n = snprintf(buf, size,
		     "{\"recipient\": \"%s\", \"action\": \"%s\", "
		     "\"flags\": {\"action-required\": %s, \"recursive\": %s}, "
		     "\"gpa\": %s, \"hva\": %s, \"size\": %" PRIu64 ", \"vcpu\": %s, "
		     "\"source\": \"%s\", \"kind\": \"%s\", \"contained\": %s, "
		     "\"private\": %s, \"time-ns\": %" PRIu64 ", \"detail\": \"%s\"}",
		     vmras_recipient_name(f->recipient), vmras_action_name(f->action),
		     f->action_required ? "true" : "false", f->recursive ? "true" : "false",
		     gpa, hva, f->size, vcpu, vmras_source_name(e->source),
		     e->kind == VMRAS_AR ? "ar" : "ao", f->contained ? "true" : "false",
		     private, e->time_ns, detail);
	if (n < 0 || (size_t)n >= size)
		return -ENOSPC;
	return n;
}
