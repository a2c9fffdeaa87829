#!/usr/bin/env bash
# Downloads the wheels listed in wheels.txt (Python 3.12, manylinux x86_64) into .whl/ at the repository root, for
# a GPU machine without network access: carry .whl/ with the tree, and run.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -v '^#' bench/gpu/wheels.txt | xargs python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl
du -sh .whl
