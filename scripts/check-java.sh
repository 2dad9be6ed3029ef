#!/usr/bin/env bash
# Spark 4 needs Java 17 or newer; say how to get it instead of failing deep inside Spark.
set -euo pipefail
if ! command -v java >/dev/null 2>&1; then
  echo "Java not found. Spark needs Java 17+: 'sudo apt-get install openjdk-17-jre-headless'" >&2
  echo "(Debian/Ubuntu), 'brew install openjdk@17' (macOS), or set JAVA_HOME." >&2
  exit 1
fi
major=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}')
if [ "${major:-0}" -lt 17 ]; then
  echo "Java $major found; Spark 4 needs Java 17 or newer (see README, Requirements)." >&2
  exit 1
fi
