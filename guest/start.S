/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test guest entry and exception stubs. The VMM starts every vCPU here in
 * 64-bit mode with RDI = vCPU index, RSI = &boot_info, RSP = its own stack.
 */
	.code64
	.section .text.entry, "ax"
	.globl _start
_start:
	xor	%ebp, %ebp
	call	guest_main
1:	cli
	hlt
	jmp	1b

/* Exceptions 0-31: push a dummy error code where the CPU pushes none. */
	.text
.macro stub vec, has_err
	.globl	exc_stub_\vec
exc_stub_\vec:
	.if \has_err == 0
	pushq	$0
	.endif
	pushq	$\vec
	jmp	exc_common
.endm

	stub 0,0;  stub 1,0;  stub 2,0;  stub 3,0;  stub 4,0;  stub 5,0
	stub 6,0;  stub 7,0;  stub 8,1;  stub 9,0;  stub 10,1; stub 11,1
	stub 12,1; stub 13,1; stub 14,1; stub 15,0; stub 16,0; stub 17,1
	stub 18,0; stub 19,0; stub 20,0; stub 21,1; stub 22,0; stub 23,0
	stub 24,0; stub 25,0; stub 26,0; stub 27,0; stub 28,0; stub 29,1
	stub 30,1; stub 31,0

	.section .rodata
	.globl	exc_stubs
	.balign	8
exc_stubs:
	.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad	exc_stub_\vec
	.endr

	.text
/* Save every GPR as struct exc_frame, call exception_dispatch(frame). */
exc_common:
	pushq	%rax
	pushq	%rbx
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%rbp
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	mov	%rsp, %rdi
	cld
	call	exception_dispatch
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rbp
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rbx
	popq	%rax
	add	$16, %rsp		/* vector, error code */
	iretq

/*
 * long mc_scan(const void *p, unsigned long nwords, uint64_t value):
 * -1 if all nwords words equal value, else the index of the first that
 * differs; -2 if a machine check interrupted the scan (the #MC handler
 * moves RIP to mc_scan_fixup, in the manner of Linux's exception tables
 * for machine-check-safe copies). nwords must be > 0.
 */
	.globl	mc_scan, mc_scan_insn, mc_scan_insn_end, mc_scan_fixup
mc_scan:
	mov	%rdx, %rax
	mov	%rsi, %rcx
	cld
mc_scan_insn:
	repe scasq
mc_scan_insn_end:
	je	1f
	mov	%rsi, %rax
	sub	%rcx, %rax
	dec	%rax
	ret
1:	mov	$-1, %rax
	ret
mc_scan_fixup:
	mov	$-2, %rax
	ret

/*
 * long fill_words(void *p, unsigned long nwords, uint64_t value): 0 once
 * all nwords words hold value; -2 if an action-required machine check
 * arrived during or just after the stores: the page may or may not be
 * whole (the same fixup: KVM cannot map a poisoned page for writing either).
 */
	.globl	fill_words, fill_insn, fill_insn_end, fill_fixup
fill_words:
	mov	%rdx, %rax
	mov	%rsi, %rcx
	cld
fill_insn:
	rep stosq
fill_insn_end:
	xor	%eax, %eax
	ret
fill_fixup:
	mov	$-2, %rax
	ret
