// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Copy between guest RAM and a buffer without dying on poison: a range
 * holding a page the registry knows is refused untouched; poison nobody
 * knew about raises SIGBUS, which the handler records and turns into a
 * jump back here. The copy holds map_lock's read side, so it never sees a
 * mapping being swapped (a split in progress).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

#include "internal.h"
#include "sources/sources.h"

static int safe_copy(struct vmras *v, uint64_t gpa, void *buf, size_t len, bool to_guest,
		     uint64_t *bad_gpa)
{
	const struct vmras_region *r = vmras_memmap_find_gpa(v->map, gpa);
	uint64_t known, fault;
	char *ram;
	sigjmp_buf jb;
	int err = 0;

	if (!r || len > r->size - (gpa - r->gpa))
		return -EFAULT;
	ram = (char *)r->hva + (gpa - r->gpa);
	/*
	 * A known bad page is not touched, so nothing new happened to it: the
	 * refusal is counted, not reported (a migration reads every bad page
	 * each round; a report would also turn an AO's record into an AR's).
	 */
	if (vmras_registry_overlaps(v->registry, gpa, len, &known)) {
		VR_STAT_ADD(v, copies_refused, 1);
		if (bad_gpa)
			*bad_gpa = known & ~(SMALL_PAGE - 1);
		return -EHWPOISON;
	}
	pthread_rwlock_rdlock(&v->map_lock);
	/*
	 * Without saving the signal mask (a system call per copy): the jump
	 * leaves the handler with SIGBUS blocked, the only signal its empty
	 * sa_mask added, so unblocking it restores the mask of the copy.
	 */
	if (sigsetjmp(jb, 0)) {
		sigset_t bus;

		sigemptyset(&bus);
		sigaddset(&bus, SIGBUS);
		pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
		fault = vr_thread_disarm_copy();
		if (bad_gpa)
			*bad_gpa = (gpa + (fault - (uintptr_t)ram)) & ~(SMALL_PAGE - 1);
		err = -EHWPOISON;
		goto out;
	}
	err = vr_thread_arm_copy(&jb, ram, len);
	if (err)
		goto out;
	if (to_guest)
		memcpy(ram, buf, len);
	else
		memcpy(buf, ram, len);
	vr_thread_disarm_copy();
out:
	pthread_rwlock_unlock(&v->map_lock);
	return err;
}

int vmras_copy_from_guest(struct vmras *v, void *dst, uint64_t gpa, size_t len)
{
	return safe_copy(v, gpa, dst, len, false, NULL);
}

int vmras_copy_to_guest(struct vmras *v, uint64_t gpa, const void *src, size_t len)
{
	return safe_copy(v, gpa, (void *)src, len, true, NULL);
}

int vmras_copy_from_guest_at(struct vmras *v, void *dst, uint64_t gpa, size_t len,
			     uint64_t *bad_gpa)
{
	return safe_copy(v, gpa, dst, len, false, bad_gpa);
}

int vmras_copy_to_guest_at(struct vmras *v, uint64_t gpa, const void *src, size_t len,
			   uint64_t *bad_gpa)
{
	return safe_copy(v, gpa, (void *)src, len, true, bad_gpa);
}
