#!/usr/bin/env bash
# Builds the register-blocked kernel's unit test (tests/c/test_small_gemm.c) for every
# variant and compiler at hand, and runs it: on this x86-64 machine the avx512, avx2 and
# generic variants (those the CPU runs) with gcc and clang, and the aarch64 build (NEON)
# with the cross compilers, under qemu's user-mode emulation. Wheels for arm64 (macOS with
# clang, Linux aarch64) are built on their own runners; this checks the NEON build before
# a release from an x86-64 machine.
#
#   bash tools/check_kernel_cross.sh
#
# Needs (Debian): gcc, and for the rest clang, gcc-aarch64-linux-gnu, qemu-user; what is
# missing is skipped and said so. Exits non-zero if any build or test fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rnnx-kernel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SOURCES=("$ROOT/tests/c/test_small_gemm.c" "$ROOT/src/_small_gemm.c")
COMMON=(-O2 -ffp-contract=fast -I"$ROOT/src")
status=0

run() {   # run NAME COMMAND...: builds and runs one test binary, the last line its verdict
    local name=$1
    shift
    if "$@" > "$WORK/out" 2>&1; then
        echo "$name: $(tail -n 1 "$WORK/out")"
    else
        echo "$name: FAILED"
        cat "$WORK/out"
        status=1
    fi
}

flags_of() {   # the variant's flags, as CMakeLists.txt passes them
    case $1 in
        avx512) echo "-mavx512f -mavx512vl -mavx512bw -mavx512dq -mavx2 -mfma" ;;
        avx2) echo "-mavx2 -mfma" ;;
        *) echo "" ;;
    esac
}

if [[ $(uname -m) == x86_64 ]]; then
    for cc in gcc clang; do
        command -v $cc > /dev/null || { echo "$cc: not installed, skipped"; continue; }
        for variant in avx512 avx2 generic; do
            case $variant in
                avx512) bytes=64 need=avx512f ;;
                avx2) bytes=32 need=avx2 ;;
                *) bytes=16 need=sse2 ;;
            esac
            if ! grep -qw "$need" /proc/cpuinfo; then
                echo "$cc $variant: this CPU lacks $need, skipped"
                continue
            fi
            # shellcheck disable=SC2046
            run "$cc $variant" bash -c "$cc ${COMMON[*]} $(flags_of $variant) \
                -DRNNX_VARIANT=$variant -DRNNX_VECTOR_BYTES=$bytes ${SOURCES[*]} -lm \
                -o $WORK/t && $WORK/t"
        done
    done
fi

if command -v aarch64-linux-gnu-gcc > /dev/null && command -v qemu-aarch64 > /dev/null; then
    QEMU=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
    run "aarch64-linux-gnu-gcc generic (NEON), under qemu" bash -c \
        "aarch64-linux-gnu-gcc ${COMMON[*]} -DRNNX_VARIANT=generic -DRNNX_VECTOR_BYTES=16 \
         ${SOURCES[*]} -lm -o $WORK/ta && ${QEMU[*]} $WORK/ta"
    if command -v clang > /dev/null; then
        # clang compiles (as on macOS arm64), the cross gcc links against the target's libc
        run "clang --target=aarch64 generic (NEON), under qemu" bash -c \
            "clang --target=aarch64-linux-gnu -isystem /usr/aarch64-linux-gnu/include \
             ${COMMON[*]} -DRNNX_VARIANT=generic -DRNNX_VECTOR_BYTES=16 -c ${SOURCES[0]} \
             -o $WORK/a.o && clang --target=aarch64-linux-gnu \
             -isystem /usr/aarch64-linux-gnu/include ${COMMON[*]} -DRNNX_VARIANT=generic \
             -DRNNX_VECTOR_BYTES=16 -c ${SOURCES[1]} -o $WORK/b.o && \
             aarch64-linux-gnu-gcc $WORK/a.o $WORK/b.o -lm -o $WORK/tc && ${QEMU[*]} $WORK/tc"
    fi
else
    echo "aarch64: gcc-aarch64-linux-gnu or qemu-user not installed, skipped"
fi
exit $status
