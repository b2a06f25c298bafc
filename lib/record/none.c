// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The durable record when the library is built without it
 * (-Drecord=disabled, no SQLite): a configured record never opens, so
 * recording stays off and vmras_record_status() says why (-EOPNOTSUPP).
 * Nothing else is ever called with a record.
 */
#include <errno.h>
#include <stdio.h>

#include "record/record.h"

int vr_record_open(struct vmras *v, const char *path, struct vr_record **out, char *why,
		   size_t why_len)
{
	(void)v;
	(void)path;
	*out = NULL;
	snprintf(why, why_len, "libvmras was built without the durable record (-Drecord=disabled)");
	return -EOPNOTSUPP;
}

void vr_record_close(struct vr_record *rec)
{
	(void)rec;
}

bool vr_record_failure(struct vr_record *rec, const struct vmras_failure *f, bool apply)
{
	(void)rec;
	(void)f;
	(void)apply;
	return false;
}

int vr_record_flush(struct vr_record *rec)
{
	(void)rec;
	return 0;
}

void vr_record_change(struct vr_record *rec, uint64_t gpa, uint64_t size, const char *change)
{
	(void)rec;
	(void)gpa;
	(void)size;
	(void)change;
}

void vr_record_reset(struct vr_record *rec)
{
	(void)rec;
}

void vr_record_migrated_out(struct vr_record *rec)
{
	(void)rec;
}
