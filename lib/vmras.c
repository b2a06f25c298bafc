// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The context's lifecycle: new, add regions and vCPUs, start (SIGBUS
 * handler, fault router, engine), free. Setup calls run on one thread
 * before vmras_start; vmras_free runs when no thread is inside a vmras
 * call. Stop order: the engine (it finishes what was reported), the
 * router (no callback runs after), the handler (waits out running ones),
 * then memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "arch/arch.h"
#include "internal.h"
#include "memory/backing.h"
#include "record/record.h"
#include "sources/sources.h"
#include "uffd/lazy.h"
#include "uffd/router.h"
#include "uffd/split.h"

void vmras_policy_default(struct vmras_policy *p)
{
	*p = (struct vmras_policy){
		.ao = VMRAS_ACTION_INJECT,
		.ar = VMRAS_ACTION_INJECT,
		.ar_not_guest = VMRAS_ACTION_FATAL,
		.undeliverable = VMRAS_ACTION_RESET,
	};
}

static bool policy_valid(const struct vmras_policy *p)
{
	return (unsigned int)p->ao < VMRAS_ACTION_COUNT &&
	       (unsigned int)p->ar < VMRAS_ACTION_COUNT &&
	       (unsigned int)p->ar_not_guest < VMRAS_ACTION_COUNT &&
	       (unsigned int)p->undeliverable < VMRAS_ACTION_COUNT &&
	       p->undeliverable != VMRAS_ACTION_INJECT;
}

int vmras_new(const struct vmras_config *cfg, struct vmras **out)
{
	struct vmras *v;
	int err;

	if (!policy_valid(&cfg->policy) || (unsigned int)cfg->ram_mmio > VMRAS_RAM_MMIO_YES)
		return -EINVAL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->cfg = *cfg;
	v->wake_fd = v->log_fd = -1;
	v->queue_tail = &v->queue;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	{
		pthread_rwlockattr_t a;

		/* A steady stream of safe copies must not starve a split. */
		pthread_rwlockattr_init(&a);
		pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&v->map_lock, &a);
		pthread_rwlockattr_destroy(&a);
	}
	v->ring = vr_ring_new();
	if (!v->ring) {
		err = -ENOMEM;
		goto err;
	}
	err = vmras_memmap_new(&v->map);
	if (err)
		goto err;
	err = vmras_registry_new(&v->registry);
	if (err)
		goto err;
	v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->wake_fd < 0) {
		err = -errno;
		goto err;
	}
	if (cfg->event_log) {
		v->log_fd = open(cfg->event_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (v->log_fd < 0) {
			err = -errno;
			goto err;
		}
	}
	*out = v;
	return 0;
err:
	vmras_free(v);
	return err;
}

void vmras_free(struct vmras *v)
{
	if (!v)
		return;
	vr_engine_stop(v);
	if (v->router)
		vr_router_stop(v->router);
	/* After everything that reports: it records and reports what is queued. */
	vr_record_close(v->record);
	v->record = NULL;
	vr_sigbus_uninstall(v);
	vr_threads_clear();
	vr_split_free_all(v);
	vr_lazy_free(v);
	vr_router_free(v->router);
	if (v->arch && v->arch->free)
		v->arch->free(v->arch_data);
	if (v->wake_fd >= 0)
		close(v->wake_fd);
	if (v->log_fd >= 0)
		close(v->log_fd);
	vmras_registry_free(v->registry);
	vmras_memmap_free(v->map);
	vr_ring_free(v->ring);
	free(v->hw_bad.gpa);
	pthread_rwlock_destroy(&v->map_lock);
	pthread_cond_destroy(&v->cond);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

int vmras_add_region(struct vmras *v, const struct vmras_region *r)
{
	struct vr_vma_attrs attrs;
	unsigned int n = vmras_memmap_count(v->map);
	int err;

	if (v->engine_started)
		return -EBUSY;
	if (r->backing != VMRAS_BACKING_ANON && r->fd < 0)
		return -EINVAL;
	/* What a remap must keep (madvise, mlock): read now, off the error path. */
	err = vr_vma_flags_read((uintptr_t)r->hva, &attrs);
	if (err)
		return err == -ENOENT ? -EFAULT : err;
	err = vmras_memmap_add(v->map, r);
	if (!err)
		v->region_attrs[n] = attrs;
	return err;
}

int vmras_add_vcpu(struct vmras *v, unsigned int index, int vcpu_fd)
{
	if (index >= VR_MAX_VCPUS || vcpu_fd < 0)
		return -EINVAL;
	pthread_mutex_lock(&v->lock);
	v->vcpus[index].registered = true;
	v->vcpus[index].fd = vcpu_fd;
	v->vcpus[index].last_ar_page = ~0ULL;
	v->vcpus[index].seen_ar_page = ~0ULL;
	if (index + 1 > v->nvcpus)
		v->nvcpus = index + 1;
	pthread_mutex_unlock(&v->lock);
	return 0;
}

int vmras_set_userfaultfd(struct vmras *v, int uffd)
{
	if (v->engine_started || v->router || uffd < 0)
		return -EINVAL;
	return vr_router_new(v, uffd, &v->router);
}

int vmras_start(struct vmras *v)
{
	int err;

	if (!v->arch)
		return -EINVAL;
	if (v->engine_started)
		return -EBUSY;
	/* Pausing needs to know which vCPUs wait inside the library (or it deadlocks). */
	if (!v->cfg.ops.pause_vcpus != !v->cfg.ops.resume_vcpus ||
	    (v->cfg.ops.pause_vcpus && !v->cfg.ops.vcpu_blocked))
		return -EINVAL;
	switch (v->cfg.ram_mmio) {
	case VMRAS_RAM_MMIO_DETECT:
		err = vr_detect_ram_mmio(&v->ram_mmio);
		if (err)
			v->ram_mmio = false; /* no KVM to ask: then it cannot matter */
		break;
	default:
		v->ram_mmio = v->cfg.ram_mmio == VMRAS_RAM_MMIO_YES;
	}
	/* Without a userfaultfd the engine still runs; containment fails and says why. */
	if (!v->router)
		(void)vr_router_new(v, -1, &v->router);
	/* A database that cannot be used leaves recording off, not the VM. */
	v->record_err = -ENOENT;
	if (v->cfg.record) {
		v->record_err = vr_record_open(v, v->cfg.record, &v->record, v->record_why,
					       sizeof(v->record_why));
		if (v->record_err)
			VR_STAT_ADD(v, record_errors, 1);
	}
	err = vr_sigbus_install(v);
	if (err)
		goto fail_record;
	if (v->router) {
		err = vr_router_start(v->router);
		if (err)
			goto fail;
	}
	err = vr_engine_start(v);
	if (err)
		goto fail;
	return 0;
fail:
	if (v->router)
		vr_router_stop(v->router);
	vr_sigbus_uninstall(v);
fail_record:
	vr_record_close(v->record);
	v->record = NULL;
	return err;
}

int vmras_record_status(struct vmras *v, char *why, size_t len)
{
	if (len)
		snprintf(why, len, "%s", v->record_err && v->record_err != -ENOENT ? v->record_why : "");
	return v->record ? 0 : v->record_err ? v->record_err : -ENOENT;
}

struct vmras_registry *vmras_get_registry(struct vmras *v)
{
	return v->registry;
}

const struct vmras_memmap *vmras_get_memmap(struct vmras *v)
{
	return v->map;
}

void vmras_get_stats(struct vmras *v, struct vmras_stats *s)
{
	pthread_mutex_lock(&v->lock);
	*s = v->stats;
	s->dropped = vr_ring_dropped(v->ring);
	pthread_mutex_unlock(&v->lock);
}

void vmras_get_caps(struct vmras *v, struct vmras_caps *c)
{
	const struct vmras_region *huge = NULL;

	memset(c, 0, sizeof(*c));
	c->contain = v->router != NULL;
	if (!c->contain)
		snprintf(c->contain_why, sizeof(c->contain_why),
			 "no userfaultfd with UFFD_FEATURE_POISON");
	c->kernel_faults = v->router && vr_router_kernel_faults(v->router);
	c->early_kill = v->engine_started && !__atomic_load_n(&v->early_kill_err, __ATOMIC_RELAXED);
	c->ram_mmio = v->ram_mmio;
	for (unsigned int i = 0; i < vmras_memmap_count(v->map) && !huge; i++)
		if (vmras_memmap_region(v->map, i)->page_size > SMALL_PAGE)
			huge = vmras_memmap_region(v->map, i);
	if (!huge)
		snprintf(c->split_why, sizeof(c->split_why), "no huge-page guest RAM");
	else
		c->split = vr_split_possible(v, huge, c->split_why, sizeof(c->split_why));
}
