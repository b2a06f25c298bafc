// SPDX-License-Identifier: GPL-2.0-or-later
/* The poison registry: lookups, merging, large ranges, thousands of entries. */
#include <errno.h>

#include "tap.h"
#include "vmras/registry.h"

static struct vmras_poison page(uint64_t gpa, enum vmras_error_kind kind)
{
	return (struct vmras_poison){ .gpa = gpa, .hva = 0x7f0000000000 + gpa, .size = 4096,
				      .state = VMRAS_PS_REPORTED, .kind = kind, .vcpu = -1,
				      .first_ns = gpa };
}

int main(void)
{
	struct vmras_registry *r;
	struct vmras_poison p, got, snap[8];
	bool merged;
	size_t n;
	uint64_t first = 0;
	int bad = 0;

	if (!is_int(vmras_registry_new(&r), 0, "new"))
		return tap_done();
	p = page(0x600000, VMRAS_AO);
	is_int(vmras_registry_add(r, &p, &merged), 0, "add one page");
	ok(!merged, "first report is new");
	ok(vmras_registry_contains(r, 0x600000) && vmras_registry_contains(r, 0x600fff),
	   "every byte of the page is poisoned");
	ok(!vmras_registry_contains(r, 0x601000) && !vmras_registry_contains(r, 0x5fffff),
	   "neighbours are not");
	ok(vmras_registry_overlaps(r, 0x5ff000, 0x1001, &first) && first == 0x600000 &&
	   vmras_registry_overlaps(r, 0x600fff, 1, &first) && first == 0x600fff &&
	   vmras_registry_overlaps(r, 0x400000, 0x400000, NULL) &&
	   vmras_registry_overlaps(r, 0x500000, UINT64_MAX, &first) && first == 0x600000 &&
	   !vmras_registry_overlaps(r, 0x601000, UINT64_MAX, NULL),
	   "ranges that reach into the page overlap it");
	ok(!vmras_registry_overlaps(r, 0x5ff000, 0x1000, NULL) &&
	   !vmras_registry_overlaps(r, 0x601000, 0x100000, NULL) &&
	   !vmras_registry_overlaps(r, 0x600000, 0, NULL),
	   "ranges that end before it, start after it, or are empty do not");

	p = page(0x600000, VMRAS_AR);
	p.vcpu = 1;
	p.state = VMRAS_PS_CONTAINED;
	is_int(vmras_registry_add(r, &p, &merged), 0, "report the page again");
	ok(merged, "the duplicate merges");
	is_int(vmras_registry_count(r), 1, "still one entry");
	is_int(vmras_registry_lookup(r, 0x600800, &got), 0, "lookup inside the page");
	is_int(got.reports, 2, "two reports");
	is_int(got.kind, VMRAS_AR, "AR upgrades the kind");
	is_int(got.vcpu, 1, "and names the vCPU");
	ok(got.state == (VMRAS_PS_REPORTED | VMRAS_PS_CONTAINED), "state bits merge");
	is_int(vmras_registry_set_state(r, 0x600000, VMRAS_PS_NOTIFIED), 0, "set state");
	vmras_registry_lookup(r, 0x600000, &got);
	ok(got.state & VMRAS_PS_NOTIFIED, "state set");
	is_int(vmras_registry_set_state(r, 0x900000, VMRAS_PS_NOTIFIED), -ENOENT,
	       "set state of an unknown range: -ENOENT");

	p = page(0x601001, VMRAS_AO);
	is_int(vmras_registry_add(r, &p, &merged), -EINVAL, "misaligned range refused");
	p.gpa = 0x601000;
	p.size = 3000;
	is_int(vmras_registry_add(r, &p, &merged), -EINVAL, "non-power-of-two size refused");

	/* A 2 MiB range absorbs the 4 KiB entry inside it. */
	p = (struct vmras_poison){ .gpa = 0x600000, .size = 2 << 20, .kind = VMRAS_AO,
				   .state = VMRAS_PS_REPORTED, .vcpu = -1 };
	is_int(vmras_registry_add(r, &p, &merged), 0, "add a 2 MiB range over it");
	is_int(vmras_registry_count(r), 1, "the 4 KiB entry was absorbed");
	vmras_registry_lookup(r, 0x7fffff, &got);
	is_u64(got.size, 2 << 20, "lookup at the end of the huge page finds it");
	is_int(got.reports, 3, "reports carried over");
	ok(vmras_registry_overlaps(r, 0x7ff000, 0x2000, &first) && first == 0x7ff000 &&
	   vmras_registry_overlaps(r, 0x500000, 0x100001, &first) && first == 0x600000 &&
	   !vmras_registry_overlaps(r, 0x800000, 0x1000, NULL) &&
	   !vmras_registry_overlaps(r, 0x500000, 0x100000, NULL),
	   "overlap with the huge range: at either edge in, just outside out");
	p = page(0x7ff000, VMRAS_AO);
	vmras_registry_add(r, &p, &merged);
	ok(merged, "a page inside a poisoned huge page merges into it");

	/* Thousands of entries. */
	for (uint64_t i = 0; i < 10000; i++) {
		p = page(0x10000000 + i * 8192, VMRAS_AO);
		if (vmras_registry_add(r, &p, &merged) || merged)
			bad++;
	}
	is_int(bad, 0, "10,000 distinct pages added");
	is_int(vmras_registry_count(r), 10001, "10,001 entries");
	for (uint64_t i = 0; i < 10000; i++)
		if (!vmras_registry_contains(r, 0x10000000 + i * 8192 + 100) ||
		    vmras_registry_contains(r, 0x10000000 + i * 8192 + 4096))
			bad++;
	is_int(bad, 0, "every one found, every gap between them clean");
	ok(vmras_registry_overlaps(r, 0x10001000, 1ULL << 40, &first) && first == 0x10002000 &&
	   vmras_registry_overlaps(r, 0x10002800, 1ULL << 40, &first) && first == 0x10002800 &&
	   !vmras_registry_overlaps(r, 0x10000000 + 10000 * 8192, 1ULL << 40, NULL),
	   "a range of more pages than the hash has slots finds the lowest entry in it");
	/* A huge page added after thousands of small entries (the rebuild path). */
	p = (struct vmras_poison){ .gpa = 0x10000000, .size = 2 << 20, .kind = VMRAS_AO,
				   .state = VMRAS_PS_REPORTED, .vcpu = -1 };
	is_int(vmras_registry_add(r, &p, &merged), 0, "a 2 MiB range over 256 of them");
	is_int(vmras_registry_count(r), 10001 - 256 + 1, "it absorbed the 256 it covers");
	for (uint64_t i = 256; i < 10000; i++)
		if (!vmras_registry_contains(r, 0x10000000 + i * 8192))
			bad++;
	is_int(bad, 0, "every other entry survived the rebuild");
	p.gpa = 0x40200000;
	vmras_registry_add(r, &p, &merged);
	p.size = 1 << 30;
	p.gpa = 0x40000000;
	is_int(vmras_registry_add(r, &p, &merged), 0, "a 1 GiB range over another 2 MiB one");
	vmras_registry_lookup(r, 0x40200000, &got);
	is_u64(got.size, 1 << 30, "the 1 GiB range absorbed that 2 MiB range");
	is_int(vmras_registry_count(r), 10001 - 256 + 2, "no overlapping entries counted twice");
	n = vmras_registry_snapshot(r, snap, 8);
	is_int(n, vmras_registry_count(r), "snapshot reports the total");
	bad = 0;
	for (int i = 1; i < 8; i++)
		bad += snap[i - 1].gpa >= snap[i].gpa;
	is_int(bad, 0, "snapshot sorted by GPA");
	vmras_registry_clear(r);
	is_int(vmras_registry_count(r), 0, "clear empties it");
	ok(!vmras_registry_contains(r, 0x600000), "nothing poisoned after clear");
	vmras_registry_free(r);
	return tap_done();
}
