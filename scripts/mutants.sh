#!/usr/bin/env bash
# Mutation testing of the modules whose output is a safety or trust verdict
# (issue 25): each module with the test targets that should catch its
# mutants. A surviving mutant is a verdict no test proves: add a test that
# fails on it (checking what a user sees), or, for an equivalent mutant,
# exclude it in .cargo/mutants.toml with a comment saying why.
#
#   scripts/mutants.sh              # every module below (long: see docs/testing.md)
#   scripts/mutants.sh trust        # one group
#   scripts/mutants.sh --in-diff D  # only mutants in the lines a diff touches
#
# Needs cargo-mutants (`cargo install cargo-mutants --locked`, 27.x) and what
# scripts/test.sh installs (the trust tests use gpg, minisign, signify).
# Results land in mutants.out/ (outcome per mutant: caught, missed, timeout,
# unviable); the exit status is non-zero when a mutant was missed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || {
  echo "mutants.sh: cargo-mutants missing: cargo install cargo-mutants --locked" >&2
  exit 1
}

# group: files (-f) and the test targets that must catch them.
declare -A files tests
files[trust]="src/trust/mod.rs src/trust/sums.rs src/trust/matching.rs src/trust/discover.rs"
tests[trust]="--lib --test trust"
files[devices]="src/devices/guard.rs src/devices/mod.rs"
tests[devices]="--lib --test devices"
files[verify]="src/write/verify.rs"
tests[verify]="--lib --test write --test contract"
files[exit]="src/cli/exit.rs"
tests[exit]="--bins --test contract"
order=(trust devices verify exit)

diff_args=()
if [ "${1:-}" = --in-diff ]; then
  diff_args=(--in-diff "$2")
  shift 2
fi
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=("${order[@]}")

status=0
for g in "${groups[@]}"; do
  [ -n "${files[$g]:-}" ] || { echo "mutants.sh: no group $g (${order[*]})" >&2; exit 2; }
  f_args=()
  for f in ${files[$g]}; do f_args+=(-f "$f"); done
  echo "== $g: ${files[$g]}"
  start=$(date +%s)
  # shellcheck disable=SC2086
  cargo mutants --no-shuffle --output "mutants.out/$g" "${diff_args[@]}" "${f_args[@]}" \
    -- ${tests[$g]} || status=1
  echo "== $g: $(( $(date +%s) - start )) s"
done
exit $status
