#!/usr/bin/env bash
# Optional speed-up: Spark ML's PCA uses native BLAS/LAPACK when libblas.so.3 and liblapack.so.3
# exist (else a pure-Java fallback, ~3-5x slower here). Installs them where we are root on Debian.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q "liblapack.so.3" && ldconfig -p | grep -q "libblas.so.3"; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread liblapack3 >/dev/null
else
  echo "note: no native BLAS/LAPACK found; Spark's PCA will use its slower Java fallback." >&2
  echo "      Debian/Ubuntu: sudo apt-get install libopenblas0-pthread liblapack3" >&2
fi
