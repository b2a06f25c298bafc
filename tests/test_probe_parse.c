// SPDX-License-Identifier: GPL-2.0-or-later
/* The /proc and /sys parsers, on good, absent and malformed text. */
#include <errno.h>

#include "probe/parse.h"
#include "tap.h"

static void test_int(void)
{
	long long v = 42;
	uint64_t u = 42;

	is_int(probe_parse_int("1\n", &v), 0, "int: '1\\n' parses");
	is_int(v, 1, "int: value 1");
	is_int(probe_parse_int("-3", &v), 0, "int: negative parses");
	is_int(v, -3, "int: value -3");
	v = 7;
	is_int(probe_parse_int("banana\n", &v), -EINVAL, "int: word rejected");
	is_int(v, 7, "int: output unchanged on error");
	is_int(probe_parse_int("", &v), -EINVAL, "int: empty rejected");
	is_int(probe_parse_int("1 2\n", &v), -EINVAL, "int: two numbers rejected");
	is_int(probe_parse_int("1\n2\n", &v), -EINVAL, "int: two lines rejected");
	is_int(probe_parse_int("99999999999999999999", &v), -EINVAL,
	       "int: overflow rejected");
	is_int(probe_parse_u64("18446744073709551615\n", &u), 0, "u64: max parses");
	is_u64(u, UINT64_MAX, "u64: max value");
	is_int(probe_parse_u64("-1", &u), -EINVAL, "u64: negative rejected");
}

static void test_meminfo(void)
{
	static const char mi[] =
		"MemTotal:       24576000 kB\n"
		"HardwareCorrupted:     8 kB\n"
		"HugePages_Total:       4\n"
		"Hugepagesize:       2048 kB\n";
	uint64_t kib = 5;

	is_int(probe_parse_meminfo_kib(mi, "HardwareCorrupted", &kib), 0,
	       "meminfo: HardwareCorrupted found");
	is_u64(kib, 8, "meminfo: HardwareCorrupted 8 kB");
	is_int(probe_parse_meminfo_kib(mi, "HugePages_Total", &kib), 0,
	       "meminfo: unitless value");
	is_u64(kib, 4, "meminfo: HugePages_Total 4");
	is_int(probe_parse_meminfo_kib(mi, "Hugepagesize", &kib), 0,
	       "meminfo: Hugepagesize found");
	is_u64(kib, 2048, "meminfo: Hugepagesize 2048");
	is_int(probe_parse_meminfo_kib(mi, "Hugepage", &kib), -ENOENT,
	       "meminfo: key prefix does not match");
	is_int(probe_parse_meminfo_kib(mi, "Mlocked", &kib), -ENOENT,
	       "meminfo: absent key");
	is_int(probe_parse_meminfo_kib("HardwareCorrupted: lots kB\n",
				       "HardwareCorrupted", &kib), -EINVAL,
	       "meminfo: non-number rejected");
	is_int(probe_parse_meminfo_kib("HardwareCorrupted: 4 MB\n",
				       "HardwareCorrupted", &kib), -EINVAL,
	       "meminfo: unknown unit rejected");
	is_int(probe_parse_meminfo_kib("HardwareCorrupted:", "HardwareCorrupted",
				       &kib), -EINVAL,
	       "meminfo: missing value rejected (no newline)");
	is_u64(kib, 2048, "meminfo: output unchanged on error");
}

static void test_bracketed(void)
{
	char out[16] = "x";

	is_int(probe_parse_bracketed("always [madvise] never\n", out, sizeof(out)),
	       0, "thp: bracketed mode");
	is_str(out, "madvise", "thp: madvise");
	is_int(probe_parse_bracketed("always madvise never\n", out, sizeof(out)),
	       -EINVAL, "thp: no bracket rejected");
	is_int(probe_parse_bracketed("[always] [never]\n", out, sizeof(out)),
	       -EINVAL, "thp: two brackets rejected");
	is_int(probe_parse_bracketed("[always\n", out, sizeof(out)), -EINVAL,
	       "thp: unclosed bracket rejected");
	is_int(probe_parse_bracketed("[averyveryverylongmode]", out, sizeof(out)),
	       -EINVAL, "thp: too long rejected");
	is_str(out, "madvise", "thp: output unchanged on error");
}

static void test_capeff(void)
{
	uint64_t caps = 0;

	is_int(probe_parse_cap_effective("Name:\tx\nCapPrm:\t0\nCapEff:\t000001fffeffffff\n",
					 &caps), 0, "capeff: parses");
	is_u64(caps, 0x1fffeffffffULL, "capeff: value");
	is_int(probe_parse_cap_effective("Name:\tx\n", &caps), -ENOENT,
	       "capeff: absent");
	is_int(probe_parse_cap_effective("CapEff:\tzz\n", &caps), -EINVAL,
	       "capeff: garbage rejected");
	is_int(probe_parse_cap_effective("CapEff:\t12 34\n", &caps), -EINVAL,
	       "capeff: trailing garbage rejected");
}

static void test_sizes(void)
{
	uint64_t s = 0;

	is_int(probe_parse_hugepages_dirname("hugepages-2048kB", &s), 0,
	       "dirname: 2048kB");
	is_u64(s, 2ULL << 20, "dirname: 2 MiB");
	is_int(probe_parse_hugepages_dirname("hugepages-1048576kB", &s), 0,
	       "dirname: 1048576kB");
	is_u64(s, 1ULL << 30, "dirname: 1 GiB");
	is_int(probe_parse_hugepages_dirname("hugepages-2048", &s), -EINVAL,
	       "dirname: missing kB rejected");
	is_int(probe_parse_hugepages_dirname("hugepages-0kB", &s), -EINVAL,
	       "dirname: zero rejected");
	is_int(probe_parse_hugepages_dirname("foo", &s), -EINVAL,
	       "dirname: other name rejected");
	is_int(probe_parse_size("2M", &s), 0, "size: 2M");
	is_u64(s, 2ULL << 20, "size: 2M value");
	is_int(probe_parse_size("1G", &s), 0, "size: 1G");
	is_u64(s, 1ULL << 30, "size: 1G value");
	is_int(probe_parse_size("4096", &s), 0, "size: bare number");
	is_u64(s, 4096, "size: 4096");
	is_int(probe_parse_size("2X", &s), -EINVAL, "size: bad suffix rejected");
	is_int(probe_parse_size("M", &s), -EINVAL, "size: no number rejected");
	is_int(probe_parse_size("99999999999T", &s), -EINVAL, "size: overflow rejected");
}

static void test_mounts(void)
{
	static const char good[] =
		"proc /proc proc rw,nosuid 0 0\n"
		"hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n"
		"none /mnt/huge\\0401g hugetlbfs rw,pagesize=1024M,size=4G 0 0\n"
		"none /mnt/default hugetlbfs rw,relatime 0 0\n"
		"\n";
	struct vmras_probe_mount m[4];
	unsigned int n = 99, bad = 0;

	is_int(probe_parse_hugetlbfs_mounts(good, 2 << 20, m, 4, &n, &bad), 0,
	       "mounts: parse");
	is_int(n, 3, "mounts: three hugetlbfs mounts");
	is_str(m[0].path, "/dev/hugepages", "mounts: first path");
	is_u64(m[0].page_size, 2ULL << 20, "mounts: pagesize=2M");
	is_str(m[1].path, "/mnt/huge 1g", "mounts: octal escape undone");
	is_u64(m[1].page_size, 1ULL << 30, "mounts: pagesize=1024M");
	is_u64(m[2].page_size, 2ULL << 20, "mounts: default size without pagesize=");

	is_int(probe_parse_hugetlbfs_mounts(good, 2 << 20, m, 1, &n, &bad), 0,
	       "mounts: more than max is not an error");
	is_int(n, 1, "mounts: stops at max");

	n = 77;
	is_int(probe_parse_hugetlbfs_mounts("proc /proc proc rw 0 0\nbroken line\n",
					    2 << 20, m, 4, &n, &bad),
	       -EINVAL, "mounts: short line rejected");
	is_int(bad, 2, "mounts: names line 2");
	is_int(n, 77, "mounts: count unchanged on error");
	is_int(probe_parse_hugetlbfs_mounts("h /x hugetlbfs rw,pagesize=huge 0 0\n",
					    2 << 20, m, 4, &n, &bad),
	       -EINVAL, "mounts: bad pagesize rejected");
	is_int(probe_parse_hugetlbfs_mounts("h /x\\04 hugetlbfs rw 0 0\n",
					    2 << 20, m, 4, &n, &bad),
	       -EINVAL, "mounts: truncated escape rejected");
	/* Found by fuzz_probe: a zero page size was taken. */
	is_int(probe_parse_hugetlbfs_mounts("h /x hugetlbfs rw,pagesize=0M 0 0\n",
					    2 << 20, m, 4, &n, &bad),
	       -EINVAL, "mounts: pagesize=0M rejected");
	is_int(probe_parse_hugetlbfs_mounts("h /x hugetlbfs rw,pagesize=3M 0 0\n",
					    2 << 20, m, 4, &n, &bad),
	       -EINVAL, "mounts: a page size that is not a power of two rejected");
	is_int(probe_parse_hugetlbfs_mounts("h /x\\000y hugetlbfs rw 0 0\n",
					    2 << 20, m, 4, &n, &bad),
	       -EINVAL, "mounts: an escaped NUL rejected");
	is_int(probe_parse_hugetlbfs_mounts("h /x\\089 hugetlbfs rw 0 0\n",
					    2 << 20, m, 4, &n, &bad),
	       -EINVAL, "mounts: a non-octal escape rejected");
}

int main(void)
{
	test_int();
	test_meminfo();
	test_bracketed();
	test_capeff();
	test_sizes();
	test_mounts();
	return tap_done();
}
