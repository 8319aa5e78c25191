#!/usr/bin/env bash
# run.sh -- runs fuzz targets of a -DLUNET_FUZZ=ON build, one at a time, at
# the lowest priority, each for SECONDS, and prints per target its minutes,
# executions, executions per second and the outcome.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]     (default: all)
#
# Each target starts from its seed corpus (tests/fuzz/corpus/<target>) and
# its dictionary when there is one; inputs found to add coverage go to
# BUILD_DIR/fuzz-corpus/<target>/ (merge the useful ones into the seed
# corpus with -merge=1), findings to BUILD_DIR/fuzz-findings/<target>/.
# Exits non-zero when a target found something.
set -uo pipefail
build=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
src=$(cd "$(dirname "$0")" && pwd)
if [ $# -eq 0 ]; then
	set -- $(cd "$src/corpus" && ls)
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
printf '%-16s %8s %12s %8s  %s\n' target minutes executions exec/s outcome
for t in "$@"; do
	bin=$build/fuzz_$t
	[ -x "$bin" ] || { echo "run.sh: $bin missing (configure with -DLUNET_FUZZ=ON)" >&2; exit 2; }
	mkdir -p "$build/fuzz-corpus/$t" "$build/fuzz-findings/$t"
	dict=()
	[ -f "$src/$t.dict" ] && dict=(-dict="$src/$t.dict")
	log=$build/fuzz-findings/$t/log.txt
	nice -n 19 "$bin" "${dict[@]}" -max_total_time="$seconds" -print_final_stats=1 \
		-rss_limit_mb=2048 -timeout=20 -artifact_prefix="$build/fuzz-findings/$t/" \
		"$build/fuzz-corpus/$t" "$src/corpus/$t" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	outcome="no finding"
	if [ $rc -ne 0 ]; then
		outcome="FINDING (exit $rc): see $log"
		status=1
	fi
	printf '%-16s %8.1f %12s %8s  %s\n' "$t" "$(echo "$seconds / 60" | bc -l)" "${runs:-?}" \
		"${secs:-?}" "$outcome"
done
exit $status
