//go:build linux && cgo

package spool

/*
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

// A request is two int32s: the file to fdatasync and the eventfd that gets
// 1 + errno (1: done) when it is. Requests are 8 bytes, under PIPE_BUF, so
// every write and every read of the pipe is one whole request.
static void *spool_fsync_worker(void *arg) {
	int rd = (int)(intptr_t)arg;
	for (;;) { // signals blocked (spool_start_fsync_threads): they go to the runtime's threads
		int32_t req[2];
		ssize_t n = read(rd, req, sizeof req);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof req)
			return NULL;
		uint64_t res = 1;
		if (fdatasync(req[0]) != 0)
			res = 1 + (uint64_t)errno;
		while (write(req[1], &res, sizeof res) < 0 && errno == EINTR) {
		}
	}
}

// spool_start_fsync_threads starts up to n workers reading rd; it returns
// how many started. They start with every signal blocked (a thread
// inherits its creator's mask), so none lands on them before they run.
static int spool_start_fsync_threads(int rd, int n) {
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int started = 0;
	for (int i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, spool_fsync_worker, (void *)(intptr_t)rd) != 0)
			break;
		started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return started;
}
*/
import "C"

import (
	"errors"
	"sync"

	"golang.org/x/sys/unix"
)

// fsyncWorkers is how many threads of the process run fdatasyncs: one per
// log file being synced at once (a gateway has a log per exporter, and
// their directories' syncs), more wait their turn in the pipe.
const fsyncWorkers = 4

var fsyncThreads struct {
	once sync.Once
	req  int // the request pipe's write end
	err  error
}

// fsyncThreadsFD starts the fsync threads (once per process; they live as
// long as it does) and returns the write end of their request pipe. They
// are threads of the C library, not of the Go runtime: an fdatasync there
// holds no P, and a thread woken when its disk write completes runs at once
// where a kernel worker (Linux AIO's fsync) waits for the busy core's next
// tick (BENCHMARKS.md, "The log's sync").
func fsyncThreadsFD() (int, error) {
	fsyncThreads.once.Do(func() {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			fsyncThreads.err = err
			return
		}
		if C.spool_start_fsync_threads(C.int(p[0]), C.int(fsyncWorkers)) == 0 {
			_ = unix.Close(p[1]) // nothing reads it
			_ = unix.Close(p[0])
			fsyncThreads.err = errors.New("pthread_create failed")
			return
		}
		fsyncThreads.req = p[1]
	})
	return fsyncThreads.req, fsyncThreads.err
}
