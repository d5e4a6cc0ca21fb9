// Package exepages makes the kernel read the executable's pages one by one,
// as they are used, instead of ahead in large blocks.
//
// otelcol-gpu is one 120 MiB binary for the agent and the gateway roles;
// the agent uses a small part of it. With the kernel's default readahead,
// every page fault in the executable reads and maps a large block around
// the page (on Linux 6.x, page-cache folios of up to a few MiB, mapped
// whole): touching 122 pages of the binary, one per MiB, made 113 MiB of it
// resident. An agent's start-up touches code and tables of every package
// the binary links, so its resident set was most of the executable. A C
// constructor, run when the binary is loaded and before the Go runtime
// starts, advises the executable's read-only mappings MADV_RANDOM: no
// readahead, so a fault reads and maps the page it needs (the same 122
// touches: 0.5 MiB). Writable mappings (Go's initialised data) are left
// alone.
//
// It works when the binary is not in the page cache yet, as at boot; pages
// an earlier read cached in large blocks are still mapped whole.
// OTELCOL_GPU_EXE_READAHEAD=1 turns it off.
package exepages

/*
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int otelcol_gpu_exe_advised;

static unsigned long hex_field(const char **p) {
	unsigned long v = 0;
	for (;; (*p)++) {
		char c = **p;
		if (c >= '0' && c <= '9') v = v * 16 + (unsigned long)(c - '0');
		else if (c >= 'a' && c <= 'f') v = v * 16 + (unsigned long)(c - 'a' + 10);
		else return v;
	}
}

__attribute__((constructor)) static void otelcol_gpu_exe_random(void) {
	const char *off = getenv("OTELCOL_GPU_EXE_READAHEAD");
	if (off != NULL && strcmp(off, "1") == 0) return;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0) return;
	exe[n] = 0;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0) return;
	static char buf[1 << 16];
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
		if (r <= 0) break;
		len += (size_t)r;
		if (len == sizeof buf - 1) break;
	}
	close(fd);
	buf[len] = 0;
	for (char *line = buf; line != NULL && *line != 0;) {
		char *end = strchr(line, '\n');
		if (end != NULL) *end = 0;
		// start-end perms offset dev inode path
		const char *p = line;
		unsigned long lo = hex_field(&p);
		if (*p == '-') {
			p++;
			unsigned long hi = hex_field(&p);
			const char *perms = p + 1;
			const char *path = strchr(line, '/');
			if (path != NULL && strcmp(path, exe) == 0 && perms[1] != 'w' && hi > lo) {
				if (madvise((void *)lo, hi - lo, MADV_RANDOM) == 0) otelcol_gpu_exe_advised = 1;
			}
		}
		line = end != NULL ? end + 1 : NULL;
	}
}

static int otelcol_gpu_exe_was_advised(void) { return otelcol_gpu_exe_advised; }
*/
import "C"

// Advised reports whether the executable's read-only mappings were advised
// MADV_RANDOM at load.
func Advised() bool { return C.otelcol_gpu_exe_was_advised() != 0 }
