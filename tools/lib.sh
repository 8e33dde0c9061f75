# Shell functions the tools/*/build.sh scripts share; source it, do not run it.
# These machines reach the Go module proxy but no release downloads, so each tool is built from
# its Go module into the aiconn cache, once: a binary already there is reused.

# The aiconn cache directory, or a path under it: cache_dir [PATH].
cache_dir() {
  echo "${AICONN_CACHE:-$HOME/.cache/aiconn}${1:+/$1}"
}

# go_install NAME VERSION DIR FIRST_TIME PACKAGE@MODULE-VERSION [GO-INSTALL-FLAG]...
# Builds the binary NAME (release VERSION) into DIR with `go install` (static, trimmed), unless
# DIR/NAME is there already, saying on stderr what it builds, how long a first build takes
# (FIRST_TIME) and how long it took. The binary is built into a temporary directory under DIR and
# moved into place, so a build cut short leaves no binary that a later run would take for a
# finished one.
go_install() (
  local name=$1 version=$2 dir=$3 first_time=$4 package=$5
  shift 5
  [[ -x $dir/$name ]] && exit 0
  mkdir -p "$dir"
  local start tmp
  start=$(date +%s)
  echo "building $name v$version into $dir (first time: $first_time)" >&2
  tmp=$(mktemp -d "$dir/bin.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  CGO_ENABLED=0 GOBIN=$tmp go install -trimpath "$@" "$package" >&2
  mv "$tmp/$name" "$dir/$name"
  echo "$name built in $(( $(date +%s) - start )) s" >&2
)
