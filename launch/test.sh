#!/usr/bin/env bash
# The whole test suite: set up and build (launch/setup.sh), run every test through
# CTest, then check that the CUDA configuration compiles and links when the CUDA
# toolkit is present (nothing CUDA runs on a machine without a GPU), run the suite
# again under AddressSanitizer + UBSan, and fuzz every file reader with libFuzzer
# (FUZZ_RUNS inputs per target, default 20000, at most FUZZ_SECONDS each, default
# 60); both from one clang build in build-fuzz/ (build-asan/ without clang).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-$(nproc)}
# python3-torch: the PyTorch cross-checks of the convolution, pooling and batch
# norm kernels (unit.KernelsTorch.*) run against it instead of skipping.
EXTRA_PACKAGES="python3-torch ${EXTRA_PACKAGES:-}" launch/setup.sh
ctest --test-dir build --output-on-failure --no-tests=error -j "$JOBS" --timeout 900

if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then
  echo "test: CUDA toolkit found: building the CUDA configuration (compile and link check)"
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DLOCKSTEP_CUDA=ON \
        -DLOCKSTEP_TESTS=ON -DLOCKSTEP_BENCH=ON >/dev/null
  # cuda_check (CMakeLists.txt): the lockstep binary with every library, and the
  # tests and benchmarks whose code changes with CUDA.
  cmake --build build-cuda -j "$JOBS" --target cuda_check
  echo "test: CUDA configuration builds (cuda_check)"
else
  echo "test: no CUDA toolkit on this machine: CUDA build check SKIPPED"
fi

# ---- AddressSanitizer + UndefinedBehaviorSanitizer build of the whole suite ----
# One clang build (build-fuzz/, LOCKSTEP_FUZZ, which implies address,undefined)
# serves this suite and the libFuzzer stage below: one instrumented build instead
# of two. Without clang's libFuzzer runtime the suite builds with the default
# compiler (build-asan/) and the fuzz stage fails (or is skipped knowingly).
# detect_leaks=0: OpenMPI and HDF5 leak by design at exit (and HDF5 on error
# paths of corrupt files), which LeakSanitizer would report as failures of tests
# that are correct. halt_on_error: a UBSan report fails the test, not just prints.
# OPENBLAS_NUM_THREADS=1: ASAN's allocator is not fork-safe while other threads
# run, so ASAN builds skip hdf5_trial_read's child then; OpenBLAS's idle pool
# must not be such a thread, or the trial-read tests cannot test it.
have_libfuzzer() {
  command -v clang++ >/dev/null 2>&1 && ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1
}
if ! have_libfuzzer; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-dev >/dev/null 2>&1 || true
fi
stage_start=$SECONDS
if have_libfuzzer; then
  san_dir=build-fuzz
  san_flags=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DLOCKSTEP_FUZZ=ON)
else
  san_dir=build-asan
  san_flags=(-DLOCKSTEP_SANITIZE=address,undefined)
fi
echo "test: sanitizers: AddressSanitizer + UndefinedBehaviorSanitizer build in $san_dir/"
# LOCKSTEP_TESTS=ON: a build-fuzz/ configured for fuzzing alone keeps OFF in its cache.
# -O1, as the sanitizers' documentation suggests: at -O3 the instrumented build took
# 18 minutes of the suite's time on 2 cores (a heavy file 103 s against 36 s at -O1).
cmake -S . -B "$san_dir" -DCMAKE_BUILD_TYPE=Release "${san_flags[@]}" \
      -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" -DCMAKE_C_FLAGS_RELEASE="-O1 -DNDEBUG" \
      -DLOCKSTEP_CUDA=OFF -DLOCKSTEP_BENCH=OFF -DLOCKSTEP_TESTS=ON >/dev/null
cmake --build "$san_dir" -j "$JOBS"
OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir "$san_dir" --output-on-failure --no-tests=error -j "$JOBS" --timeout 1500
echo "test: sanitizers: suite passed ($((SECONDS - stage_start)) s)"

# ---- libFuzzer targets: every reader of files fed mutated inputs ----
# Each target starts from its checked-in corpus and runs FUZZ_RUNS inputs (capped
# at FUZZ_SECONDS each). Failures: a crash, a sanitizer report in lockstep code,
# a broken property (tests/fuzz/*_fuzz.cpp). HDF5's own out-of-bounds reads and
# crashes inside a checking child (hdf5_trial_read) are the defended case: the
# parent gets a DataError, and the child's report is printed and counted.
FUZZ_RUNS=${FUZZ_RUNS:-20000}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
stage_start=$SECONDS
if [ "$san_dir" = build-fuzz ]; then
  echo "test: fuzz: libFuzzer targets of build-fuzz/"
  fuzz_dir=$(mktemp -d /tmp/lockstep-fuzz.XXXXXX)
  fuzz_failed=0
  for target in config override idx hdf5_dataset model_file; do
    mkdir -p "$fuzz_dir/$target"
    # allocator_may_return_null: HDF5 asks for sizes read from a corrupt file
    # and handles the failure; malloc_limit above HDF5's 4 GiB largest request;
    # a small quarantine keeps the process small, so each trial-read fork is cheap.
    # One thread (no OpenBLAS pool, no libFuzzer RSS thread: -rss_limit_mb=0, the
    # per-malloc limit stays): ASAN builds fork the trial-read child only then.
    if OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=0:quarantine_size_mb=16 \
       UBSAN_OPTIONS=print_stacktrace=1 \
       build-fuzz/tests/fuzz/fuzz_$target -runs="$FUZZ_RUNS" -max_total_time="$FUZZ_SECONDS" \
         -malloc_limit_mb=4100 -rss_limit_mb=0 -print_final_stats=1 \
         -artifact_prefix="$fuzz_dir/$target-" "$fuzz_dir/$target" "tests/fuzz/corpus/$target" \
         >"$fuzz_dir/$target.log" 2>&1; then
      status="ok"
    else
      status="CRASH"
      fuzz_failed=1
    fi
    # A sanitizer report is lockstep's bug unless the first stack frames are HDF5's.
    ours=$(awk '/ERROR: (Address|Undefined)Sanitizer|runtime error:/ {n = 4; hdf5 = 0; next}
                n > 0 && /^ *#[0-9]/ {if ($0 ~ /libhdf5/) hdf5 = 1; if (--n == 0 && !hdf5) bad++}
                END {print bad + 0}' "$fuzz_dir/$target.log")
    hdf5_reports=$(grep -c "ERROR: AddressSanitizer" "$fuzz_dir/$target.log" || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$fuzz_dir/$target.log" | tail -1)
    [ "$ours" -eq 0 ] || { status="SANITIZER REPORT IN LOCKSTEP CODE"; fuzz_failed=1; }
    echo "test: fuzz: $target: ${runs:-0} inputs, $status (sanitizer reports: $hdf5_reports, of them in lockstep code: $ours)"
    if [ "$status" != "ok" ]; then
      tail -n 60 "$fuzz_dir/$target.log"
      ls "$fuzz_dir"/"$target"-* 2>/dev/null || true
    fi
  done
  [ "$fuzz_failed" -eq 0 ] || { echo "test: fuzz: FAILED (inputs and logs in $fuzz_dir)"; exit 1; }
  rm -rf "$fuzz_dir"
  echo "test: fuzz: passed ($((SECONDS - stage_start)) s)"
elif [ "${LOCKSTEP_SKIP_FUZZ:-0}" = 1 ]; then
  echo "test: fuzz: clang or the libFuzzer runtime is missing: fuzz stage SKIPPED (LOCKSTEP_SKIP_FUZZ=1)"
else
  echo "test: fuzz: FAILED: clang or the libFuzzer runtime (libclang-rt-dev) is missing and could not be" \
       "installed (install them, or set LOCKSTEP_SKIP_FUZZ=1 to skip this stage knowingly)" >&2
  exit 1
fi
