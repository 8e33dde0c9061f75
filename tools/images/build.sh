#!/usr/bin/env bash
# Builds the container images the dev cluster's real node runs, as OCI archives under
# $AICONN_CACHE/images, because no registry is reachable from these machines:
#   pause   the pod sandbox (tools/images/pause.c, static), containerd's sandbox_image
#   python  a Debian bookworm base with python3 (mmdebstrap --variant=minbase)
#   aiconn  the project's image, the Dockerfile's equivalent: the python base plus aiconn and
#           its runtime dependencies as wheels, no pip and no compiler, UID 65532, entrypoint
#           `aiconn`
#   vllm    the CPU build of vLLM for the inference pods: a Debian bookworm base with python3 and
#           the C++ compiler torch.compile needs on the CPU, plus a `vllm serve` launcher. vLLM's
#           site-packages (tools/vllm/install.sh, ~6 GB) are not copied in: the pod mounts them
#           read-only from a PersistentVolumeClaim at /opt/vllm (the operator's
#           AICONN_VLLM_RUNTIME_CLAIM), so the image stays small and builds in about a minute.
# Usage: build.sh [pause|python|aiconn|vllm]... (default: all). Prints one archive path per image;
# an archive that exists is reused (delete it to rebuild). Needs root (mmdebstrap, umoci unpack).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/../lib.sh"
out=$(cache_dir images)
PAUSE_TAG=3.10
PYTHON_TAG=3.11-bookworm
VLLM_TAG=$(sed -n 's/^VLLM_CPU_VERSION=//p' "$root/tools/vllm/install.sh")
AICONN_TAG=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/aiconn/__init__.py")
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# An OCI layout holding one image tagged $2, from the layer tars that follow; prints nothing.
new_image() {
  local layout=$1 tag=$2
  shift 2
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  local layer
  for layer in "$@"; do
    umoci raw add-layer --image "$layout:$tag" "$layer"
  done
}

pack() {  # layout, archive
  umoci gc --layout "$1"
  tar -C "$1" -cf "$2.tmp" .
  mv "$2.tmp" "$2"
}

build_pause() {
  local archive=$out/pause_$PAUSE_TAG.tar
  if [[ ! -s $archive ]]; then
    mkdir -p "$work/pause/rootfs"
    gcc -static -Os -s -o "$work/pause/rootfs/pause" "$here/pause.c"
    tar -C "$work/pause/rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/pause/layer.tar" .
    new_image "$work/pause/oci" "$PAUSE_TAG" "$work/pause/layer.tar"
    umoci config --image "$work/pause/oci:$PAUSE_TAG" --config.entrypoint=/pause \
      --config.user=65535:65535
    pack "$work/pause/oci" "$archive"
  fi
  echo "$archive"
}

# A minimal Debian bookworm root filesystem with the packages $2 (comma-separated), as the tar
# $1, cached; prints its path.
debian_rootfs() {
  local rootfs=$1 packages=$2
  if [[ ! -f $rootfs || ! -s $rootfs ]]; then
    rm -rf "$rootfs" "$rootfs.tmp"
    # --format=tar: mmdebstrap picks its output format from the name, and `.tar.tmp` would make
    # it a directory.
    mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
      bookworm "$rootfs.tmp" "$DEBIAN_MIRROR" >&2
    mv "$rootfs.tmp" "$rootfs"
  fi
  echo "$rootfs"
}

python_rootfs() {  # the base's root filesystem as a tar, cached: it is also the aiconn image's
  debian_rootfs "$out/python-rootfs_$PYTHON_TAG.tar" python3,ca-certificates
}

vllm_rootfs() {  # the vLLM image's base: python3, and g++ for Inductor's CPU kernels
  debian_rootfs "$out/vllm-rootfs_$VLLM_TAG.tar" python3,python3-dev,g++,libnuma1,ca-certificates
}

# The image's own revision, in its cache name only (the tag stays vLLM's version): bump it when
# the image's files or config below change, so a machine that built the last one builds again.
VLLM_IMAGE_REV=2

build_vllm() {
  local archive=$out/vllm-cpu_$VLLM_TAG-r$VLLM_IMAGE_REV.tar
  if [[ ! -s $archive ]]; then
    local app=$work/vllm/rootfs
    mkdir -p "$app/usr/local/bin" "$app/usr/local/lib/python3.11/dist-packages" "$app/opt/vllm"
    # The operator renders `vllm serve ARGS`; vllm-cpu's own console script asks for the metadata
    # of a distribution named `vllm` and fails, so serve runs the OpenAI server module, which
    # takes the same flags.
    cat >"$app/usr/local/bin/vllm" <<'SH'
#!/bin/sh
if [ "$1" = serve ]; then
  shift
  exec python3 -m vllm.entrypoints.openai.api_server "$@"
fi
echo "this image runs only: vllm serve ARGS" >&2
exit 2
SH
    chmod 0755 "$app/usr/local/bin/vllm"
    # After the standard library on sys.path (a .pth line, not PYTHONPATH, which would go first).
    echo /opt/vllm >"$app/usr/local/lib/python3.11/dist-packages/vllm-runtime.pth"
    tar -C "$app" --numeric-owner --owner=0 --group=0 -cf "$work/vllm/layer.tar" .
    new_image "$work/vllm/oci" "$VLLM_TAG" "$(vllm_rootfs)" "$work/vllm/layer.tar"
    # Offline (no hub, no usage reports), and a 1 GiB KV cache: vLLM's CPU default would take
    # a share of the machine's memory, not of the pod's limit. The model worker runs inside the
    # engine-core process (as aiconn/devstack/vllm.py runs vLLM on the host): in a process of
    # its own it busy-polls a shared-memory queue for a second after every step, 1.39 cores for
    # one request at a time against 0.55 here.
    umoci config --image "$work/vllm/oci:$VLLM_TAG" \
      --config.user=65532:65532 --config.workingdir=/tmp \
      --config.entrypoint=vllm --config.cmd=serve \
      --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --config.env=HF_HUB_OFFLINE=1 --config.env=VLLM_CPU_KVCACHE_SPACE=1 \
      --config.env=VLLM_NO_USAGE_STATS=1 --config.env=DO_NOT_TRACK=1 \
      --config.env=VLLM_ENABLE_V1_MULTIPROCESSING=0 \
      --config.env=PYTHONDONTWRITEBYTECODE=1 --config.env=PYTHONUNBUFFERED=1
    pack "$work/vllm/oci" "$archive"
  fi
  echo "$archive"
}

build_python() {
  local archive=$out/python_$PYTHON_TAG.tar
  if [[ ! -s $archive ]]; then
    new_image "$work/python/oci" "$PYTHON_TAG" "$(python_rootfs)"
    umoci config --image "$work/python/oci:$PYTHON_TAG" --config.cmd=python3 \
      --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    pack "$work/python/oci" "$archive"
  fi
  echo "$archive"
}

build_aiconn() {
  local archive=$out/aiconn_$AICONN_TAG.tar
  local stamp=$out/aiconn_$AICONN_TAG.source
  # The source tree's content decides whether the cached image is stale.
  local digest
  digest=$(cd "$root" && find pyproject.toml aiconn -type f -name '*.py' -o -type f -name '*.yaml' \
    -o -type f -name '*.html' -o -type f -name '*.toml' | sort | xargs sha256sum | sha256sum | cut -c1-16)
  if [[ ! -s $archive || $(cat "$stamp" 2>/dev/null) != "$digest" ]]; then
    local python=${PYTHON:-python3}
    local app=$work/aiconn/rootfs
    mkdir -p "$work/aiconn/wheels" "$app/usr/local/bin" "$app/var/lib/aiconn"
    "$python" -m pip wheel --quiet --wheel-dir "$work/aiconn/wheels" "$root" >&2
    "$python" -m pip install --quiet --no-deps --no-compile --no-index \
      --target "$app/usr/local/lib/python3.11/dist-packages" "$work/aiconn/wheels"/*.whl >&2
    rm -rf "$app/usr/local/lib/python3.11/dist-packages/bin"
    printf '#!/usr/bin/python3\nimport sys\nfrom aiconn.cli import main\nsys.exit(main())\n' \
      >"$app/usr/local/bin/aiconn"
    chmod 0755 "$app/usr/local/bin/aiconn"
    chown 65532:65532 "$app/var/lib/aiconn"
    # The Dockerfile's `useradd nonroot`: Kopf asks getpass.getuser() who it runs as.
    mkdir -p "$app/etc"
    local file
    for file in passwd group; do
      tar -xOf "$(python_rootfs)" "./etc/$file" >"$app/etc/$file"
    done
    echo 'nonroot:x:65532:65532::/nonexistent:/usr/sbin/nologin' >>"$app/etc/passwd"
    echo 'nonroot:x:65532:' >>"$app/etc/group"
    tar -C "$app" --numeric-owner -cf "$work/aiconn/layer.tar" .
    new_image "$work/aiconn/oci" "$AICONN_TAG" "$(python_rootfs)" "$work/aiconn/layer.tar"
    umoci config --image "$work/aiconn/oci:$AICONN_TAG" \
      --config.user=65532:65532 --config.workingdir=/var/lib/aiconn \
      --config.entrypoint=aiconn --config.cmd=--help \
      --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --config.env=PYTHONDONTWRITEBYTECODE=1 --config.env=PYTHONUNBUFFERED=1 \
      --config.env=HOME=/tmp
    pack "$work/aiconn/oci" "$archive"
    echo "$digest" >"$stamp"
  fi
  echo "$archive"
}

[[ $# -gt 0 ]] || set -- pause python aiconn vllm
for image in "$@"; do
  start=$(date +%s)
  case $image in
    pause) build_pause ;;
    python) build_python ;;
    aiconn) build_aiconn ;;
    vllm) build_vllm ;;
    *) echo "unknown image $image (pause, python, aiconn, vllm)" >&2; exit 2 ;;
  esac
  echo "image $image ready in $(( $(date +%s) - start )) s" >&2
done
