#!/usr/bin/env bash
# Builds `locus` with `--features cuda` (CUDA 13.0, sm_90 for H100/H200 by default) and puts a
# self-contained copy in dist/cuda/: the stripped binary plus the CUDA runtime libraries it links
# (cuBLAS, cuBLASLt, cudart, cuRAND), found through an `$ORIGIN` run path, so the folder can
# be copied to a GPU machine and run there (about 750 MB, 540 MB of it cuBLASLt; the binary alone
# is under 64 MB). Only the driver (libcuda.so.1) must come from that machine, and it must support
# CUDA 13.0 (driver 580 or newer); the binary also needs glibc 2.34 or newer there.
#
# No system CUDA is needed. The toolkit comes from NVIDIA's wheels on PyPI (pinned to 13.0.x: a
# newer nvcc writes PTX that a CUDA 13.0 driver refuses) plus Debian's libcuda1 (bookworm
# non-free, fetched with a private apt configuration; the system's apt sources stay untouched),
# whose libcuda.so is only linked against, never shipped. Both are unpacked once into
#   ${LOCUS_CUDA_HOME:-${XDG_CACHE_HOME:-~/.cache}/locus/cuda-13.0}   (about 1.2 GB)
# and reused by later runs. Needs a Rust toolchain, python3 with pip, unzip, apt-get, dpkg and a
# C++ compiler; as root the script installs the missing Debian packages itself, otherwise it says
# which to install. It does not need root.
#
# With `--features nccl` (data-parallel training on several GPUs, one MPI rank per GPU) it also
# needs Open MPI and libclang to build (installed as root like the rest), adds NCCL from its
# wheel (nvidia-nccl-cu13, into the same cache) and ships libnccl.so.2 (about 200 MB) beside the
# binary. The binary then links the system's Open MPI (libmpi.so.40), which the GPU machine must
# have (it launches the ranks); its runtime libraries are also copied into dist/cuda/openmpi/ for
# runs of one rank on a machine without it (scripts/gpu-check.sh puts that on the loader path).
#
# Environment: CUDA_COMPUTE_CAP (default 90), CARGO_TARGET_DIR (default target/cuda, so CPU
# builds in target/ are left alone), LOCUS_CUDA_HOME (toolkit cache). Arguments go to cargo.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tk=${LOCUS_CUDA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/locus/cuda-13.0}
dist="$root/dist/cuda"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

# The toolkit, pinned: PyPI package==version.
wheels=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
)

# NCCL, for `--features nccl` only.
nccl_wheel=nvidia-nccl-cu13==2.32.6
wants_nccl=false
[[ " $* " == *nccl* ]] && wants_nccl=true

[ "$(uname -m)" = x86_64 ] || { echo "error: only x86_64 Linux is supported" >&2; exit 1; }

# Prerequisites: command, then the Debian package that provides it.
missing=()
need() { command -v "$1" > /dev/null || missing+=("$2"); }
need unzip unzip
need dpkg dpkg
need apt-get apt
need c++ g++
need strip binutils
need readelf binutils
python3 -m pip --version > /dev/null 2>&1 || missing+=(python3-pip)
if $wants_nccl; then
  need mpicc libopenmpi-dev
  need mpirun openmpi-bin
  ldconfig -p | grep -q 'libclang[-.0-9]*\.so' || missing+=(libclang-dev)
fi
command -v cargo > /dev/null || {
  echo "error: cargo not found; install Rust from https://rustup.rs" >&2
  exit 1
}
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "error: missing packages; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# Fetches and unpacks the toolkit unless the cache already holds this exact one.
install_toolkit() {
  local downloads="$tk.downloads" staging="$tk.staging"
  mkdir -p "$downloads"
  echo "downloading the CUDA 13.0 toolkit wheels into $downloads"
  # pip skips wheels already in $downloads.
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$downloads" "${wheels[@]}"

  if ! compgen -G "$downloads/libcuda1_*.deb" > /dev/null; then
    echo "downloading libcuda1 (Debian bookworm non-free; linked against only)"
    local apt_dir="$downloads/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
      "http://deb.debian.org/debian bookworm non-free" > "$apt_dir/sources.list"
    local apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list"
      -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$apt_dir/lists"
      -o "Dir::Cache=$apt_dir/cache" -o Dir::State::status=/dev/null
      -o Debug::NoLocking=1 -o "APT::Sandbox::User=$(id -un)")
    apt-get "${apt_opts[@]}" update > /dev/null
    (cd "$downloads" && apt-get "${apt_opts[@]}" download libcuda1)
    rm -rf "$apt_dir"
  fi

  echo "unpacking into $tk"
  rm -rf "$staging"
  mkdir -p "$staging"
  local spec name version
  for spec in "${wheels[@]}"; do
    name=${spec%%==*}
    version=${spec##*==}
    unzip -q -o "$downloads/${name//-/_}-$version-"*.whl 'nvidia/*' -d "$staging"
  done
  local cu="$staging/nvidia/cu13"
  dpkg -x "$downloads"/libcuda1_*.deb "$staging/libcuda1"
  # nvcc.profile looks for targets/x86_64-linux/{include,lib64}; cudarc links from lib/stubs.
  mkdir -p "$cu/targets" "$cu/lib/stubs"
  ln -s .. "$cu/targets/x86_64-linux"
  ln -s lib "$cu/lib64"
  cp -L "$staging"/libcuda1/usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so \
    "$cu/lib/stubs/libcuda.so"
  local lib
  for lib in libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libnvrtc.so.13 libcurand.so.10; do
    ln -s "$lib" "$cu/lib/${lib%.so.*}.so"
  done
  "$cu/bin/nvcc" --version | grep -q 'release 13\.0' || {
    echo "error: $cu/bin/nvcc is not CUDA 13.0" >&2
    exit 1
  }
  printf '%s\n' "${wheels[@]}" > "$cu/.locus-toolkit"
  rm -rf "$tk"
  mkdir -p "$(dirname "$tk")"
  mv "$cu" "$tk"
  rm -rf "$staging" "$downloads"
}

if [ "$(cat "$tk/.locus-toolkit" 2> /dev/null)" = "$(printf '%s\n' "${wheels[@]}")" ]; then
  echo "using the CUDA 13.0 toolkit in $tk"
else
  install_toolkit
fi

# Adds NCCL's library and header to the toolkit cache unless it holds this version already.
install_nccl() {
  local downloads="$tk.downloads" staging="$tk.nccl-staging"
  mkdir -p "$downloads"
  echo "downloading NCCL ($nccl_wheel) into $downloads"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$downloads" "$nccl_wheel"
  rm -rf "$staging"
  unzip -q -o "$downloads/nvidia_nccl_cu13-${nccl_wheel##*==}-"*.whl \
    'nvidia/nccl/lib/libnccl.so.2' 'nvidia/nccl/include/nccl.h' -d "$staging"
  mv "$staging/nvidia/nccl/lib/libnccl.so.2" "$tk/lib/"
  ln -sf libnccl.so.2 "$tk/lib/libnccl.so"
  mv "$staging/nvidia/nccl/include/nccl.h" "$tk/include/"
  echo "$nccl_wheel" > "$tk/.locus-nccl"
  rm -rf "$staging" "$downloads"
}

if $wants_nccl; then
  if [ "$(cat "$tk/.locus-nccl" 2> /dev/null)" = "$nccl_wheel" ]; then
    echo "using NCCL ($nccl_wheel) in $tk"
  else
    install_nccl
  fi
fi

export CUDA_HOME="$tk" NVCC="$tk/bin/nvcc" CUDARC_CUDA_VERSION=13000
export PATH="$tk/bin:$tk/nvvm/bin:$PATH"
echo "building locus (--features cuda, sm_$CUDA_COMPUTE_CAP) in $CARGO_TARGET_DIR"
cd "$root"
# The run path goes on the binary alone; dependencies keep their usual flags.
cargo rustc --release -p locus-cli --bin locus --features cuda "$@" \
  -- -C 'link-arg=-Wl,-rpath,$ORIGIN'

rm -rf "$dist"
mkdir -p "$dist"
strip -o "$dist/locus" "$CARGO_TARGET_DIR/release/locus"
# Ships every toolkit library the binary needs, directly or through another one (cuBLAS needs
# cuBLASLt); libcuda.so.1 is not among them, it lives in lib/stubs. libnvrtc loads its builtins
# itself.
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
queue=("$dist/locus")
while [ ${#queue[@]} -gt 0 ]; do
  for lib in $(needed "${queue[0]}"); do
    if [ -f "$tk/lib/$lib" ] && [ ! -f "$dist/$lib" ]; then
      cp "$tk/lib/$lib" "$dist/"
      queue+=("$dist/$lib")
    fi
  done
  queue=("${queue[@]:1}")
done
# Open MPI's runtime libraries (everything libmpi needs but the C library), kept off the run
# path so that a machine's own Open MPI, which its mpirun must match, is preferred.
if readelf -d "$dist/locus" | grep -q 'NEEDED.*libmpi\.so'; then
  mkdir -p "$dist/openmpi"
  libmpi=$(ldconfig -p | sed -n 's/.*libmpi\.so\.40 .*=> \(.*\)/\1/p' | head -1)
  for lib in "$libmpi" $(ldd "$libmpi" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p'); do
    case $(basename "$lib") in
      libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux*) ;;
      *) cp -L "$lib" "$dist/openmpi/" ;;
    esac
  done
fi
if [ -f "$dist/libnvrtc.so.13" ]; then
  cp "$tk"/lib/libnvrtc-builtins.so.13.0 "$dist/"
fi
readelf -d "$dist/locus" | grep -q 'R.*PATH.*\[\$ORIGIN\]' || {
  echo "error: $dist/locus has no \$ORIGIN run path" >&2
  exit 1
}
echo "dist/cuda ready ($(du -sh "$dist" | cut -f1)): copy it to the GPU machine and run" \
  "dist/cuda/locus ... --device cuda"
