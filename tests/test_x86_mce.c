// SPDX-License-Identifier: GPL-2.0-or-later
/* The machine-check encoder, bit for bit. */
#include <errno.h>

#include "tap.h"
#include "vmras/x86_mce.h"

int main(void)
{
	struct vmras_x86_mce m;
	struct vmras_mce_params p = { .type = VMRAS_MCE_SRAO, .gpa = 0x600123, .lsb = 12, .bank = 9 };

	is_int(vmras_x86_mce_encode(&p, &m), 0, "SRAO encodes");
	/* VAL|UC|EN|MISCV|ADDRV|S, MCA code 0xC0 (memory scrub) */
	is_u64(m.status, 0xbd000000000000c0ULL, "SRAO status VAL|UC|EN|MISCV|ADDRV|S|0xc0");
	is_u64(m.addr, 0x600000, "SRAO addr: the 4 KiB page");
	is_u64(m.misc, 0x8c, "SRAO misc: physical address mode, LSB 12 (QEMU's 0x8c)");
	is_u64(m.mcg_status, 0x5, "SRAO MCG_STATUS RIPV|MCIP");
	is_int(m.bank, 9, "bank 9");

	p.type = VMRAS_MCE_SRAR;
	p.eipv = true;
	is_int(vmras_x86_mce_encode(&p, &m), 0, "SRAR encodes");
	is_u64(m.status, 0xbd80000000000134ULL, "SRAR status adds AR, MCA code 0x134");
	is_u64(m.mcg_status, 0x7, "SRAR MCG_STATUS RIPV|EIPV|MCIP");
	is_u64(m.misc, 0x8c, "SRAR misc LSB 12");

	p.eipv = false;
	vmras_x86_mce_encode(&p, &m);
	is_u64(m.mcg_status, 0x5, "SRAR after an emulated load: EIPV clear");
	p.lmce = true;
	vmras_x86_mce_encode(&p, &m);
	is_u64(m.mcg_status, 0xd, "SRAR local: LMCES set");

	p = (struct vmras_mce_params){ .type = VMRAS_MCE_SRAO, .gpa = 0x40345678, .lsb = 21, .bank = 9 };
	vmras_x86_mce_encode(&p, &m);
	is_u64(m.addr, 0x40200000, "2 MiB loss: addr aligned to 2 MiB");
	is_u64(m.misc, 0x95, "2 MiB loss: LSB 21");
	p.lsb = 30;
	vmras_x86_mce_encode(&p, &m);
	is_u64(m.addr, 0x40000000, "1 GiB loss: addr aligned to 1 GiB");
	is_u64(m.misc, 0x9e, "1 GiB loss: LSB 30");

	p = (struct vmras_mce_params){ .type = VMRAS_MCE_BROADCAST, .bank = 1 };
	is_int(vmras_x86_mce_encode(&p, &m), 0, "broadcast encodes");
	is_u64(m.status, 0xa000000000000000ULL, "broadcast status VAL|UC only");
	is_u64(m.addr | m.misc, 0, "broadcast: no address");
	is_u64(m.mcg_status, 0x5, "broadcast MCG_STATUS RIPV|MCIP");

	m.status = 42;
	p = (struct vmras_mce_params){ .type = VMRAS_MCE_SRAO, .lsb = 11 };
	is_int(vmras_x86_mce_encode(&p, &m), -EINVAL, "LSB below 12 refused");
	is_u64(m.status, 42, "output untouched on error");
	p.lsb = 12;
	p.bank = 32;
	is_int(vmras_x86_mce_encode(&p, &m), -EINVAL, "bank 32 refused");
	p.bank = 0;
	p.type = (enum vmras_mce_type)7;
	is_int(vmras_x86_mce_encode(&p, &m), -EINVAL, "unknown type refused");
	return tap_done();
}
