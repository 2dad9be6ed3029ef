#!/usr/bin/env bash
# `make image-test`: build the image offline with buildah, serve a bundle from it, classify a photo.
#
# No Docker engine and no image registry are needed, only Debian's buildah and debootstrap, root,
# and the package mirrors (Debian for the base and Java, the host's pip index for the wheelhouse):
#   1. base:      a minbase bookworm root with python3 (debootstrap), imported as
#                 localhost/python:3.11-slim-bookworm; cached
#   2. wheelhouse: wheels of requirements.lock (the runtime lock, not requirements-dev.lock) built
#                 on the host into ./wheelhouse (git-ignored); cached until requirements.lock changes
#   3. image:     buildah bud (vfs storage, chroot isolation) with BASE and WHEELHOUSE set
#   4. bundle:    the job on tests/data with --featurizer pixels:32 (seconds, no weights)
#   5. serve:     `python -m service` from the image, the bundle mounted read-only at /bundle,
#                 host network on a free loopback port; wait for /readyz
#   6. classify:  POST a photo to /v1/classify over HTTP
#   7. non-root:  the uid of the process listening on the port, from /proc, must be the
#                 Dockerfile's (useradd --uid), never 0
#   8. stop:      SIGTERM, then the working container and the bundle are removed
# Caches (base rootfs, buildah storage) live in $IMAGE_TEST_CACHE, default ~/.cache/fruitclf-image-test;
# `rm -rf` it (and ./wheelhouse) to reclaim the disk. Each step's seconds are printed at the end.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
CACHE=${IMAGE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fruitclf-image-test}
BASE_TAG=localhost/python:3.11-slim-bookworm
IMAGE=${IMAGE_TEST_TAG:-localhost/fruitclf:image-test}
WHEELHOUSE=wheelhouse # relative to the build context (the repo), as the Dockerfile's COPY needs
READY_TIMEOUT_S=${READY_TIMEOUT_S:-240}
# A private storage root: other builds on this host do not see or disturb these images.
BUILDAH=(buildah --root "$CACHE/storage" --runroot "$CACHE/runroot" --storage-driver vfs)

die() { echo "image-test: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (debootstrap, and buildah's chroot isolation without user namespaces)"
for tool in buildah debootstrap ss; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install buildah debootstrap iproute2"
done
[[ -x $PY ]] || die "$PY not found: run make install first"
EXPECTED_UID=$(grep -oE 'useradd [^&]*--uid [0-9]+' "$REPO/Dockerfile" | grep -oE '[0-9]+$') \
    || die "no useradd --uid in the Dockerfile"

declare -a TIMES=()
STEP="" STEP_START=0 RUN_START=$(date +%s%N)
seconds_since() { local ns=$(($(date +%s%N) - $1)); printf '%d.%d' $((ns / 1000000000)) $((ns / 100000000 % 10)); }
step() {
    [[ -n $STEP ]] && TIMES+=("$(printf '  %-11s %7s s' "$STEP" "$(seconds_since "$STEP_START")")")
    STEP=$1 STEP_START=$(date +%s%N)
    [[ -n $STEP ]] && echo "== $STEP: $2"
    return 0
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fruitclf-image-test.XXXXXX")
CTR="" SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    [[ -n $CTR ]] && "${BUILDAH[@]}" rm "$CTR" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$CACHE"

step base "local base image $BASE_TAG"
if "${BUILDAH[@]}" inspect --type image "$BASE_TAG" >/dev/null 2>&1; then
    echo "   cached"
else
    if [[ ! -s $CACHE/base/rootfs.tar ]]; then
        rm -rf "$CACHE/rootfs" "$CACHE/base" && mkdir -p "$CACHE/base"
        # bookworm's python3 is 3.11, as in python:3.11-slim-bookworm; python-is-python3 gives `python`.
        debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
            bookworm "$CACHE/rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
            || die "debootstrap failed, see $CACHE/debootstrap.log"
        rm -rf "$CACHE/rootfs/var/cache/apt/archives/"*.deb "$CACHE/rootfs/var/lib/apt/lists/"*
        tar -C "$CACHE/rootfs" -cf "$CACHE/base/rootfs.tar.part" . && mv "$CACHE/base/rootfs.tar.part" "$CACHE/base/rootfs.tar"
        rm -rf "$CACHE/rootfs"
    fi
    printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["python3"]\n' >"$CACHE/base/Containerfile"
    "${BUILDAH[@]}" bud --isolation chroot --pull=never -q -t "$BASE_TAG" -f "$CACHE/base/Containerfile" "$CACHE/base" >/dev/null
fi

step wheelhouse "wheels of requirements.lock in ./$WHEELHOUSE"
STAMP=$REPO/$WHEELHOUSE/.complete
if [[ -f $STAMP && $STAMP -nt $REPO/requirements.lock ]]; then
    echo "   cached ($(find "$REPO/$WHEELHOUSE" -name '*.whl' | wc -l) wheels)"
else
    # The host's pip and index; the build then needs neither (pip wheel reuses pip's cache).
    "$PY" -m pip wheel -q -r "$REPO/requirements.lock" "pip>=24" "setuptools>=77" -w "$REPO/$WHEELHOUSE"
    touch "$STAMP"
fi

step image "buildah bud -> $IMAGE"
# --format docker keeps the HEALTHCHECK (OCI drops it); --network host lets apt-get reach Debian.
"${BUILDAH[@]}" bud --isolation chroot --network host --pull=never --format docker --layers=false \
    --build-arg BASE="$BASE_TAG" --build-arg WHEELHOUSE="$WHEELHOUSE" \
    -t "$IMAGE" -f "$REPO/Dockerfile" "$REPO" >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log"; die "image build failed"; }
# The previous run's image, now untagged, takes GBs on vfs: drop it (this storage is ours alone).
"${BUILDAH[@]}" rmi --prune >/dev/null
SIZE=$("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE" | head -n 1)
echo "   $IMAGE: $SIZE"

step bundle "job on tests/data with --featurizer pixels:32"
BUNDLE=$WORK/bundle
(cd "$REPO" && "$PY" -m batch --input tests/data/fruits360/Training --output "$BUNDLE" \
    --featurizer pixels:32 --master "local[1]") >"$WORK/job.log" 2>&1 \
    || { tail -n 40 "$WORK/job.log"; die "the job failed"; }
# The container's user (uid $EXPECTED_UID) is not the host user who wrote the bundle: give it read
# access, as a volume's owner would. Report what the job left, so a too-narrow mode stays visible.
echo "   file modes the job wrote: $(find "$BUNDLE" -type f -printf '%m\n' | sort | uniq -c | xargs)"
chmod -R a+rX "$WORK"

step serve "python -m service from the image, bundle read-only at /bundle"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CTR=$("${BUILDAH[@]}" from --pull=never --name "fruitclf-image-test-$$" "$IMAGE")
# Mounted beside the image's VOLUME /artifacts, not on it: buildah 1.28 once mounted the image's
# empty volume over the bind mount there (CURRENT not found). Check the mount and the user first.
MOUNT=(-v "$BUNDLE:/bundle:ro")
"${BUILDAH[@]}" run --isolation chroot "${MOUNT[@]}" "$CTR" -- sh -c 'echo "   buildah run: uid $(id -u)"; test -r /bundle/CURRENT' \
    || die "the bundle is not readable at /bundle in the container"
"${BUILDAH[@]}" run --isolation chroot --network host "${MOUNT[@]}" "$CTR" -- \
    env ARTIFACTS_URI=/bundle python -m service --host 127.0.0.1 --port "$PORT" >"$WORK/service.log" 2>&1 &
SERVER_PID=$!
URL=http://127.0.0.1:$PORT
"$PY" - "$URL" "$READY_TIMEOUT_S" "$SERVER_PID" <<'EOF' || { tail -n 40 "$WORK/service.log"; die "the service never became ready"; }
import os, sys, time, httpx
url, limit, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        if httpx.get(url + "/readyz", timeout=2).status_code == 200:
            print(f"   ready on {url}")
            sys.exit(0)
    except httpx.HTTPError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("the container exited")
    time.sleep(1)
sys.exit(f"not ready after {limit:.0f} s")
EOF

step classify "POST a Kiwi photo to /v1/classify"
PHOTO=$(find "$REPO/tests/data/fruits360/Test/Kiwi" -name '*.jpg' | sort | head -n 1)
"$PY" - "$URL" "$PHOTO" <<'EOF' || { tail -n 40 "$WORK/service.log"; die "classification failed"; }
import sys, httpx
url, photo = sys.argv[1], sys.argv[2]
with open(photo, "rb") as f:
    r = httpx.post(url + "/v1/classify", files={"file": ("kiwi.jpg", f, "image/jpeg")}, timeout=30)
print(f"   HTTP {r.status_code}, model version {r.headers.get('x-model-version', '?')}")
r.raise_for_status()
body = r.json()
top = body["predictions"][0] if "predictions" in body else body
print("   " + str(top)[:200])
EOF

step non-root "uid of the process listening on :$PORT"
LISTENER=$(ss -Hltnp "sport = :$PORT" | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2)
[[ -n $LISTENER ]] || die "no process listens on :$PORT"
SERVED_UID=$(awk '/^Uid:/ {print $2}' "/proc/$LISTENER/status")
echo "   pid $LISTENER: $(tr '\0' ' ' <"/proc/$LISTENER/cmdline"), uid $SERVED_UID (Dockerfile: $EXPECTED_UID)"
[[ $SERVED_UID != 0 ]] || die "the service runs as root"
[[ $SERVED_UID == "$EXPECTED_UID" ]] || die "the service runs as uid $SERVED_UID, not $EXPECTED_UID"

step stop "SIGTERM, remove the container and the bundle"
kill "$LISTENER"
for _ in $(seq 50); do kill -0 "$LISTENER" 2>/dev/null || break; sleep 0.2; done
kill -0 "$LISTENER" 2>/dev/null && die "the service ignored SIGTERM for 10 s"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
"${BUILDAH[@]}" rm "$CTR" >/dev/null
CTR=""
step "" ""

echo "image-test passed: $IMAGE ($SIZE) served a classification as uid $SERVED_UID"
printf '%s\n' "${TIMES[@]}"
echo "  total       $(printf '%7s' "$(seconds_since "$RUN_START")") s"
