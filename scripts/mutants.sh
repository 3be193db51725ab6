#!/usr/bin/env bash
# Mutation testing (cargo-mutants) of the modules whose output is a safety or
# trust verdict, each file with the test targets that should catch its
# mutants. docs/testing.md ("Mutation testing") says why these modules, how
# long each takes and what every surviving mutant is.
#
#   scripts/mutants.sh                          # every module below (hours on 2 cores)
#   scripts/mutants.sh trust devices            # some modules
#   scripts/mutants.sh trust -- -F has_references   # extra cargo-mutants args
#   git diff main... > /tmp/change.diff
#   scripts/mutants.sh -- --in-diff /tmp/change.diff  # only mutants on changed lines
#   scripts/mutants.sh -- --list                # the mutants, nothing run
#
# cargo-mutants runs --in-place: the source files are mutated one at a time
# and restored, reusing the warm target/ instead of copying it. Do not edit
# the tree while it runs. It runs under `nice -n 19`, one mutant at a time
# (--in-place is always one at a time: cargo-mutants refuses it with -j).
#
# Results go to target/mutants/MODULE/mutants.out/ (missed.txt, caught.txt,
# unviable.txt, timeout.txt, log/). Exits 1 when any mutant survives (missed or
# timed out): every survivor must be caught by a test or be explained in
# .cargo/mutants.toml, where exclude_re holds the equivalent ones.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "mutants.sh: cargo-mutants is missing: cargo install cargo-mutants --locked" >&2
  exit 2
fi

# MODULE: the files mutated.
declare -A files=(
  [trust]="src/trust/mod.rs src/trust/sums.rs src/trust/decoded.rs src/trust/discover.rs src/trust/signature.rs src/trust/matching.rs"
  [devices]="src/devices/safety.rs src/devices/resolve.rs src/devices/guard.rs src/devices/files.rs"
  [verify]="src/write/verify.rs"
  [exit]="src/cli/exit.rs src/cli/verify.rs src/job/mod.rs"
)
# MODULE: the functions of those files that decide a verdict, as a
# cargo-mutants --re (-F) over mutant names ("FILE:LINE:COL: replace … in
# FUNCTION"); the rest of the files (plumbing, progress, JSON fields) is
# left to the ordinary tests. A module without one runs every mutant.
# MUTANTS_ALL=1 runs every mutant of every file listed.
declare -A verdicts=(
  # What is refused and why (safety.rs), what a TARGET names (resolve.rs),
  # a file target's rules and a disk that holds the image (files.rs), the
  # identity re-check before the first write (guard.rs).
  [devices]='src/devices/(safety|resolve)\.rs|src/devices/files\.rs:.*(check_file|check_disk)|src/devices/guard\.rs:.*(Identity::compare|check_identity)'
  # The comparison and its error; not the reader threads' plumbing or
  # the progress events.
  [verify]='src/write/verify\.rs:.*(Stop<.*>::check|replace check |in check$|check_inner|against_sums|against_plan|locate|short|differs)'
  # Every error → exit code map; the verify command's code (run); the
  # source-check gate that lets a write proceed (check_source).
  [exit]='src/cli/exit\.rs|src/cli/verify\.rs:.*( in run$|replace run )|src/job/mod\.rs:.*check_source'
)
# MODULE: the unit-test targets (lib, the binary's own tests) and the
# integration tests (former tests/NAME.rs, now modules of tests/it) that
# should catch its mutants, and the name prefixes that select their tests.
declare -A units=(
  [trust]="--lib"
  [devices]="--lib"
  [verify]="--lib"
  [exit]="--lib --bin=bootstick"
)
declare -A integration=(
  [trust]="trust"
  [devices]="devices"
  [verify]="write"
  [exit]="contract job"
)
declare -A prefixes=(
  [trust]="trust::"
  [devices]="devices::"
  [verify]="write::"
  [exit]="cli:: job:: contract:: trust::"
)
# MODULE: tests left out: they boot a QEMU guest under TCG (minutes each) and
# repeat what the tests kept check on the host.
declare -A skips=(
  [devices]="guest_usb_sticks_selection_safety_and_eject"
)
order=(trust devices verify exit)

modules=()
while (($#)); do
  case "$1" in
    --) shift; break ;;
    *)
      [ -n "${files[$1]+x}" ] || { echo "mutants.sh: unknown module $1 (${order[*]})" >&2; exit 2; }
      modules+=("$1"); shift ;;
  esac
done
extra=("$@")
((${#modules[@]})) || modules=("${order[@]}")

# The test targets of MODULE as cargo-mutants arguments: `-C ARG` goes to the
# build and to the test run (so only these targets are built for each
# mutant), what follows the second `--` to the test binaries.
targets() {
  local m=$1 args=() bin=() t
  for t in ${units[$m]}; do args+=(-C "$t"); done
  if [ -f tests/it/main.rs ]; then
    # One integration binary: the module's tests by name. The prefixes also
    # narrow the unit tests to the module's own.
    args+=(-C --test=it)
    for t in ${prefixes[$m]}; do bin+=("$t"); done
  else
    for t in ${integration[$m]}; do args+=(-C "--test=$t"); done
  fi
  for t in ${skips[$m]:-}; do bin+=(--skip "$t"); done
  ((${#bin[@]})) && args+=(-- -- "${bin[@]}")
  printf '%s\n' "${args[@]}"
}

status=0
summary=()
for m in "${modules[@]}"; do
  fargs=()
  for f in ${files[$m]}; do fargs+=(-f "$f"); done
  if [ -n "${verdicts[$m]:-}" ] && [ "${MUTANTS_ALL:-}" != 1 ]; then
    fargs+=(-F "${verdicts[$m]}")
  fi
  mapfile -t targs < <(targets "$m")
  out="target/mutants/$m"
  mkdir -p "$out"
  # Mutants excluded by .cargo/mutants.toml (explained there as equivalent).
  all=$(cargo mutants --no-config --list "${fargs[@]}" "${extra[@]}" 2>/dev/null | wc -l || true)
  kept=$(cargo mutants --list "${fargs[@]}" "${extra[@]}" 2>/dev/null | wc -l || true)
  if [[ " ${extra[*]} " == *" --list "* ]]; then
    cargo mutants "${fargs[@]}" "${extra[@]}"
    continue
  fi
  echo "== $m: ${files[$m]}"
  echo "   tests: ${targs[*]}"
  start=$(date +%s)
  rc=0
  nice -n 19 cargo mutants --in-place --output "$out" "${fargs[@]}" "${extra[@]}" "${targs[@]}" || rc=$?
  minutes=$(( ($(date +%s) - start + 59) / 60 ))
  # 0: all caught; 2: missed; 3: timeouts; anything else: the run itself failed
  # (a baseline that does not pass is 4).
  case $rc in
    0) ;;
    2 | 3) status=1 ;;
    *) echo "mutants.sh: cargo mutants failed for $m (exit $rc)" >&2; status=1 ;;
  esac
  o="$out/mutants.out/outcomes.json"
  if [ -f "$o" ]; then
    summary+=("$(jq -r --arg m "$m" --arg e "$((all - kept))" --arg t "$minutes" \
      '"\($m): \(.total_mutants) mutants, \(.caught) caught, \(.missed) missed, \(.timeout) timeout, \(.unviable) unviable, \($e) explained (excluded), \($t) min"' "$o")")
  fi
done

if ((${#summary[@]})); then
  echo
  printf '%s\n' "${summary[@]}"
fi
exit $status
