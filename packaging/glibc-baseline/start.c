/*
 * The C start file (crt1.o) of a current glibc calls __libc_start_main,
 * which the linker would bind to its newest version (GLIBC_2.34). This
 * object, linked into the program, defines __libc_start_main itself (a
 * definition in an object wins over a shared library's), and goes on to the
 * version every glibc since the architecture's first has: GLIBC_2.2.5 on
 * x86-64, GLIBC_2.17 on arm64 (BASELINE_VERSION, set by
 * scripts/glibc-stubs.sh).
 *
 * Newer glibc's compatibility __libc_start_main runs the program's
 * constructors when the start file passes none (current start files pass
 * none), and an old glibc's runs those it is passed: none, which loses only
 * crtbegin.o's frame_dummy (transactional-memory clone tables, unused).
 */
#define STR_(x) #x
#define STR(x) STR_(x)

typedef int (*main_fn)(int, char **, char **);

extern int __libc_start_main_baseline(main_fn main, int argc, char **argv,
                                      void (*init)(void), void (*fini)(void),
                                      void (*rtld_fini)(void), void *stack_end);
__asm__(".symver __libc_start_main_baseline,__libc_start_main@" STR(BASELINE_VERSION));

/*
 * Hidden: the start file's call binds to it at link time, but it is never
 * exported, or the dynamic loader would resolve the versioned call below to
 * this very function (an executable's unversioned symbol matches any
 * version request) and the program would loop before main.
 */
__attribute__((visibility("hidden")))
int __libc_start_main(main_fn main, int argc, char **argv,
                             void (*init)(void), void (*fini)(void),
                             void (*rtld_fini)(void), void *stack_end)
{
	return __libc_start_main_baseline(main, argc, argv, init, fini, rtld_fini, stack_end);
}
