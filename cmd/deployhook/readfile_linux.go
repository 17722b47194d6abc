package main

import "golang.org/x/sys/unix"

// hugeRead is the size from which allocate maps memory for transparent
// huge pages.
const hugeRead = 1 << 20

// allocate returns an empty buffer of capacity n. From hugeRead bytes it
// is anonymous memory that asks the kernel for 2 MiB pages
// (MADV_HUGEPAGE). A short-lived `deployhook validate` of a large
// cluster.conf spent a quarter of its page faults, each a trip into the
// kernel, on the fresh 4 KiB pages of the buffer it read the file into.
// Read this way (and with the printer's line table gone), a 2.8 MB file
// took 46.6 and 47.3 ms as a whole process instead of 58.4 and 60.3 ms
// (README, Performance). The memory is never unmapped: the process that
// reads it exits once the file is validated. Where huge pages are not to
// be had, it is ordinary memory.
func allocate(n int) []byte {
	if n < hugeRead {
		return make([]byte, 0, n)
	}
	const page = 2 << 20
	buf, err := unix.Mmap(-1, 0, (n+page-1)&^(page-1), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]byte, 0, n)
	}
	_ = unix.Madvise(buf, unix.MADV_HUGEPAGE) // advice: ordinary pages without it
	return buf[:0]
}
