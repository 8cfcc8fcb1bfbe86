#!/usr/bin/env bash
# The data-parallel tests (issue 18), which `.ci/run` runs after the README's test command:
# installs Open MPI and libclang (for the MPI bindings) from Debian's packages when they are
# missing (as root; otherwise it says what to install), fetches Multi30k, lints the `mpi`
# build, then runs crates/locus-cli/tests/distributed.rs, whose every `mpirun -np 2` runs under
# a timeout. The default build and `cargo test --workspace` need none of this.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mpirun > /dev/null || missing+=(openmpi-bin)
command -v mpicc > /dev/null || missing+=(libopenmpi-dev)
ldconfig -p | grep -q 'libclang[-.0-9]*\.so' || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: install ${missing[*]} (apt-get install ${missing[*]}) and run this again" >&2
    exit 1
  fi
  echo "installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

scripts/get-multi30k.sh
# Open MPI refuses to start ranks as root (CI runs as root) unless told this.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The whole workspace with the feature, not `-p locus-cli`: its dependencies then resolve to the
# features `cargo test --workspace` built them with, and only the crates that MPI touches are
# built again (about 2 minutes of CI, not 4).
cargo clippy --workspace --features locus-cli/mpi --all-targets -- -D warnings
# One test at a time: each starts 2 ranks, which is all the cores CI has.
timeout 1800 cargo test --workspace --features locus-cli/mpi --test distributed -- --test-threads=1
