#!/usr/bin/env bash
# Regenerates the seed corpora under tests/fuzz/corpus/ with the generator in
# make_corpus.cpp (built in BUILD_DIR, default build/). The corpora are checked
# in; run this after changing the generator and commit the result.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${1:-build}
cmake --build "$BUILD_DIR" -j 2 --target fuzz_make_corpus
"$BUILD_DIR/tests/fuzz/fuzz_make_corpus" tests/fuzz/corpus
du -sh tests/fuzz/corpus
