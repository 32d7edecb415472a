# The test disk's boot sector: a minimal Linux loader in the MBR, so the disk
# boots by itself from the BIOS (SeaBIOS) without a bootloader package.
# It follows the kernel's x86 boot protocol (Documentation/arch/x86/boot.rst):
#   the real-mode setup (setup_sects + 1 sectors)  -> 0x10000 (X)
#   the protected-mode kernel                       -> 0x100000 (1 MiB)
#   the initrd                                      -> INITRD_ADDR
#   the command line                                -> X + 0xe000
# then fills in the setup header and jumps to X + 0x200 with the stack below
# the command line. Sectors come by INT 13h AH=42h (LBA) into a 64 KiB
# bounce buffer, and go above 1 MiB by INT 15h AH=87h (the BIOS block move).
#
# build-test-disk.sh assembles it between a file that sets the layout
# (KERNEL_LBA, KERNEL_SECTORS, SETUP_SECTS, INITRD_LBA, INITRD_SECTORS,
# INITRD_BYTES, INITRD_ADDR) and one that holds the command line (between
# the labels cmdline and cmdline_end, NUL-terminated), and links it at
# 0x7c00 as a flat binary that must fit in the 440 bytes before the disk
# signature and the partition table.
	.code16
	.text
	.globl	_start
_start:
	cli
	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$0x7c00, %sp
	ljmp	$0, $normalized		# some BIOSes enter at 07c0:0000
normalized:
	sti
	mov	%dl, drive

	# Real-mode setup: one read, straight to X.
	movw	$0x1000, dap_seg
	movl	$KERNEL_LBA, dap_lba
	movw	$SETUP_SECTS + 1, dap_count
	call	read

	movl	$KERNEL_LBA + SETUP_SECTS + 1, %eax
	movl	$KERNEL_SECTORS - SETUP_SECTS - 1, %ecx
	movl	$0x100000, %edi
	call	load_high
	movl	$INITRD_LBA, %eax
	movl	$INITRD_SECTORS, %ecx
	movl	$INITRD_ADDR, %edi
	call	load_high

	# The setup header (offsets from boot.rst), then the command line.
	push	$0x1000
	pop	%es
	movb	$0xff, %es:0x210		# type_of_loader: undefined
	orb	$0x80, %es:0x211		# loadflags: CAN_USE_HEAP
	movl	$INITRD_ADDR, %es:0x218	# ramdisk_image
	movl	$INITRD_BYTES, %es:0x21c	# ramdisk_size
	movw	$0xde00, %es:0x224		# heap_end_ptr
	movl	$0x1e000, %es:0x228		# cmd_line_ptr (linear X + 0xe000)
	mov	$cmdline, %si
	mov	$0xe000, %di
	mov	$cmdline_end - cmdline, %cx
	rep movsb

	cli
	mov	$0x1000, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %fs
	mov	%ax, %gs
	mov	%ax, %ss
	mov	$0xe000, %sp
	ljmp	$0x1020, $0

# Reads dap_count sectors from dap_lba to dap_seg:0000.
read:
	mov	$dap, %si
	mov	$0x42, %ah
	mov	drive, %dl
	int	$0x13
	jc	fail
	ret

# Loads %ecx sectors from LBA %eax to linear %edi (above 1 MiB), 127 at a time.
load_high:
	jecxz	done
	mov	$127, %ebx
	cmp	%ebx, %ecx
	jae	1f
	mov	%ecx, %ebx
1:	mov	%eax, dap_lba
	mov	%bx, dap_count
	movw	$0x2000, dap_seg
	pushal
	call	read
	popal
	# The block move's destination descriptor: base 0-23 at +2, 24-31 at +7.
	mov	%edi, dst + 2
	movb	$0x93, dst + 5
	mov	%edi, %edx
	shr	$24, %edx
	mov	%dl, dst + 7
	pushal
	push	%ds
	pop	%es
	mov	$gdt, %si
	mov	%bx, %cx
	shl	$8, %cx			# words: 256 per sector
	mov	$0x87, %ah
	int	$0x15
	jc	fail
	popal
	add	%ebx, %eax
	sub	%ebx, %ecx
	shl	$9, %ebx
	add	%ebx, %edi
	jmp	load_high
done:
	ret

# Says so on the first serial port (the guest's console log) and stops.
fail:
	mov	$0x3f8, %dx
	mov	$failmsg, %si
1:	lodsb
	test	%al, %al
	jz	2f
	out	%al, %dx
	jmp	1b
2:	hlt
	jmp	2b

failmsg:
	.asciz	"\nBERTH-GUEST mbr-error\n"
drive:
	.byte	0x80
	.balign	4
dap:				# INT 13h AH=42h disk address packet
	.byte	16, 0
dap_count:
	.word	0
	.word	0		# offset
dap_seg:
	.word	0
dap_lba:
	.long	0, 0
gdt:				# INT 15h AH=87h: dummy, GDT, source, destination, BIOS CS, SS
	.fill	16, 1, 0
	.word	0xffff		# source: the bounce buffer at 0x20000
	.byte	0x00, 0x00, 0x02, 0x93, 0x00, 0x00
dst:
	.word	0xffff
	.byte	0, 0, 0, 0x93, 0, 0
	.fill	16, 1, 0
