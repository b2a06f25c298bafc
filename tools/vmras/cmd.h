/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef VMRAS_TOOL_CMD_H
#define VMRAS_TOOL_CMD_H

#include <stdbool.h>
#include <stdint.h>

extern const char *prog;

/* One line on stderr: "vmras CMD: what failed: why". */
void tool_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * A number ("4096", "0x1000"), with suffix also "64M", "1G", "16k"
 * (powers of 1024): 0 or -EINVAL (no sign, nothing after, no overflow).
 */
int tool_parse_size(const char *s, bool suffix, uint64_t *out);

int probe_main(int argc, char **argv);
int demo_main(int argc, char **argv);
int run_main(int argc, char **argv);
int inject_main(int argc, char **argv);
int events_main(int argc, char **argv);
int migrate_main(int argc, char **argv);
int x86_plan_main(int argc, char **argv);
int errors_main(int argc, char **argv);
int metrics_main(int argc, char **argv);
int exporter_main(int argc, char **argv);
int serve_snapshot_main(int argc, char **argv);
int decode_main(int argc, char **argv);

#endif
