#!/usr/bin/env bash
# CI's contract guard, in two parts:
#
# 1. The generated code is what scripts/generate makes from proto/: regenerate,
#    and fail on any changed, added or removed generated file. (In CI's fresh
#    clone this is `git diff --exit-code` on the committed code; on a developer's
#    machine it compares against the working tree, so it checks uncommitted
#    regenerations too.)
#
# 2. No change breaks existing callers: `buf breaking` (FILE rules, buf.yaml)
#    of the working tree against every earlier version of the contract on the
#    first-parent history of main (or of the merge base with main, on another
#    branch). Comparing against all of them, not only against the previous
#    commit, catches a break however many commits one push carries; a fresh
#    clone has that history, while a comparison with `.git#branch=main` there
#    compares main with itself. When there is no earlier version (the first
#    commit, a depth-1 clone) there is nothing to break and the check says so.
#
#    BUF_BREAKING_AGAINST=<git ref>  compare against that one commit instead
#                                    (e.g. origin/main in a pull-request build).
#    BUF_BREAKING_SINCE=<git ref>    ignore versions up to and including that
#                                    commit: the escape hatch for a deliberate,
#                                    announced break.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
buf=.tools/bin/buf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# --- 1. regenerate and compare ----------------------------------------------
generated_files() {
  {
    find client/python/src/pdsidecar_client -name '*_pb2*' -type f
    find client/go -name '*.pb.go' -type f
    find client/ts/src/gen -type f 2>/dev/null || true
  } | LC_ALL=C sort
}
generators=(.tools/py/bin/python .tools/bin/protoc-gen-go .tools/bin/protoc-gen-go-grpc
  client/ts/node_modules/.bin/protoc-gen-es)
absent=()
for tool in "${generators[@]}"; do [[ -x "$tool" ]] || absent+=("$tool"); done
[[ -x "$buf" ]] || { echo "check_generated: $buf is missing; run scripts/install_toolchain.sh" >&2; exit 1; }
mkdir -p "$tmp/before" "$tmp/after"
if [[ ${#absent[@]} -gt 0 && "${CI:-}" != "true" ]]; then
  echo "generated code: NOT CHECKED, generators missing (${absent[*]}); run scripts/install_toolchain.sh" >&2
elif ! { generated_files | tar -cf - -T - | tar -xf - -C "$tmp/before"; scripts/generate; }; then
  fail=1
elif generated_files | tar -cf - -T - | tar -xf - -C "$tmp/after" &&
  diff -r "$tmp/before" "$tmp/after" >/dev/null; then
  echo "generated code: up to date ($(generated_files | wc -l) files)"
else
  echo "generated code: STALE. Run scripts/generate and commit the result. Differences:" >&2
  (cd "$tmp" && diff -ru before after | head -80) >&2 || true
  fail=1
fi
if [[ -d .git ]] && untracked=$(git ls-files --others --exclude-standard -- \
    $(generated_files) 2>/dev/null) && [[ -n "$untracked" ]]; then
  echo "generated code: not committed yet (git add them):" >&2
  echo "$untracked" | sed 's/^/  /' >&2
  if [[ "${CI:-}" == "true" ]]; then fail=1; fi
fi

# --- 2. buf breaking against earlier versions of the contract ---------------
breaking() { # <commit> : the working tree against that commit's proto/
  local sha=$1 dir="$tmp/against/$1"
  mkdir -p "$dir"
  git archive "$sha" -- proto | tar -xf - -C "$dir"
  if git cat-file -e "$sha:buf.yaml" 2>/dev/null; then
    git show "$sha:buf.yaml" >"$dir/buf.yaml"
  else
    printf 'version: v2\nmodules:\n  - path: proto\n' >"$dir/buf.yaml"
  fi
  if "$buf" breaking --against "$dir" >"$tmp/breaking.out" 2>&1; then
    echo "buf breaking: compatible with $(git log -1 --format='%h %s' "$sha" | cut -c1-72)"
  else
    echo "buf breaking: BREAKS callers of $(git log -1 --format='%h %s' "$sha" | cut -c1-72):" >&2
    sed 's/^/  /' "$tmp/breaking.out" >&2
    fail=1
  fi
}

if ! git rev-parse -q --verify HEAD >/dev/null 2>&1; then
  echo "buf breaking: no commit yet; nothing to compare with"
elif [[ -n "${BUF_BREAKING_AGAINST:-}" ]]; then
  breaking "$(git rev-parse "$BUF_BREAKING_AGAINST^{commit}")"
else
  base=HEAD
  branch=$(git rev-parse --abbrev-ref HEAD)
  if [[ "$branch" != main ]]; then
    for main in main origin/main; do
      if git rev-parse -q --verify "$main^{commit}" >/dev/null; then
        base=$(git merge-base HEAD "$main") || base=HEAD
        break
      fi
    done
  fi
  range=$base
  if [[ -n "${BUF_BREAKING_SINCE:-}" ]]; then
    range="$(git rev-parse "$BUF_BREAKING_SINCE^{commit}")..$base"
  fi
  mapfile -t versions < <(git log --first-parent --format=%H "$range" -- proto buf.yaml)
  if [[ ${#versions[@]} -eq 0 ]]; then
    echo "buf breaking: no earlier version of the contract in this history; nothing to compare with"
  fi
  if [[ "$(git rev-parse --is-shallow-repository)" == true ]]; then
    echo "buf breaking: shallow clone; comparing with the ${#versions[@]} version(s) it has"
  fi
  for sha in "${versions[@]}"; do
    breaking "$sha"
  done
fi

exit "$fail"
