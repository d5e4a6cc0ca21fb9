#!/usr/bin/env bash
# Builds stub shared libraries that pin otelcol-gpu's glibc baseline.
#
#   scripts/glibc-stubs.sh CC ARCH OUTDIR
#
# For each library named in packaging/glibc-baseline/symbols, OUTDIR gets
# <soname>.stub: a shared object whose SONAME is the real library's and which
# exports exactly the listed symbols at the listed (old) versions. Linked
# before the C library (the Makefile passes them in -extldflags), they make
# the linker record those old versions; at run time the real glibc, old or
# new, provides them. The stubs are never installed or loaded.
# OUTDIR also gets start.o (packaging/glibc-baseline/start.c), which binds
# __libc_start_main to the baseline version.
set -euo pipefail
cc=$1 arch=$2 out=$3
here=$(cd "$(dirname "$0")/.." && pwd)
table=$here/packaging/glibc-baseline/symbols
mkdir -p "$out"

for lib in $(awk '!/^#/ && NF {print $1}' "$table" | sort -u); do
	src=$out/$lib.c map=$out/$lib.map
	: >"$src"
	# One version node per version, each inheriting the one before, as
	# glibc's own version scripts do.
	awk -v lib="$lib" -v arch="$arch" '
		!/^#/ && NF && $1 == lib {
			v = (arch == "arm64") ? "GLIBC_2.17" : $3
			if (!(v in syms)) order[n++] = v
			syms[v] = syms[v] "\t" $2 ";\n"
			print "void " $2 "(void) {}" >> src
		}
		END {
			prev = ""
			for (i = 0; i < n; i++) {
				printf "%s {\n  global:\n%s", order[i], syms[order[i]]
				if (i == 0) printf "  local: *;\n"
				printf "}%s;\n", prev == "" ? "" : " " prev
				prev = order[i]
			}
		}' src="$src" "$table" >"$map"
	"$cc" -shared -nostdlib -fPIC -o "$out/$lib.stub" -Wl,-soname,"$lib" -Wl,--version-script="$map" "$src"
done

baseline=GLIBC_2.2.5
[ "$arch" = arm64 ] && baseline=GLIBC_2.17
"$cc" -c -O2 -fPIC -fno-builtin -DBASELINE_VERSION="$baseline" -o "$out/start.o" "$here/packaging/glibc-baseline/start.c"
