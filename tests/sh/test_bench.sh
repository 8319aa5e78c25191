#!/usr/bin/env bash
# The benchmark's scripts, without running a benchmark:
#   coretypes   which OpenBLAS core types a CPU is offered, from made-up
#               /proc/cpuinfo files (never one whose instructions it lacks),
#               and which the calibration lines make the fastest
#   run         every bad option is an error (exit 2) before anything runs
#   report.py   a made-up raw file gives the ratios, the reference core
#               type and the fractions of the FMA peak computed by hand
#   dist, dist_report.py  the data-parallel benchmark: bad usage, and the
#               speedup and allreduce share of made-up RESULT lines
# Usage: test_bench.sh BUILD_DIR SOURCE_DIR
set -u
src=$2
bench=$src/experiments/bench
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
out=$TMP
: >"$TMP/out"
: >"$TMP/err"
. "$src/tests/sh/lib.sh"

# ---- coretypes ----------------------------------------------------------------------
# cpu VENDOR FLAGS...: a two-processor cpuinfo file; prints its path
cpu() {
	local vendor=$1 f=$out/cpuinfo.$RANDOM
	shift
	for p in 0 1; do
		printf 'processor\t: %s\nvendor_id\t: %s\ncpu family\t: 6\nflags\t\t: fpu sse sse2 %s\n\n' \
			"$p" "$vendor" "$*"
	done >"$f"
	echo "$f"
}
types() {  # the types coretypes lists for a cpuinfo file, on one line
	"$bench/coretypes" "$1" | tr '\n' ' ' | sed 's/ $//'
}
skx="avx avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl"
check "Intel AVX-512: Haswell and SkylakeX" \
	test "$(types "$(cpu GenuineIntel pni ssse3 $skx)")" = "Haswell SkylakeX"
check "Zen 3 (AVX2, AMD): Haswell and Zen" \
	test "$(types "$(cpu AuthenticAMD pni avx avx2 fma)")" = "Haswell Zen"
check "Zen 4 (AVX-512, AMD): Haswell, Zen, SkylakeX" \
	test "$(types "$(cpu AuthenticAMD $skx avx512_bf16)")" = "Haswell Zen SkylakeX"
check "Intel AVX2 without AVX-512: Haswell only" \
	test "$(types "$(cpu GenuineIntel avx avx2 fma)")" = "Haswell"
check "AVX-512F without BW/DQ/VL (Xeon Phi): no SkylakeX" \
	test "$(types "$(cpu GenuineIntel avx avx2 fma avx512f avx512cd avx512er avx512pf)")" = "Haswell"
check "avx512 extensions without avx512f: no SkylakeX" \
	test "$(types "$(cpu GenuineIntel avx avx2 fma avx512cd avx512bw avx512dq avx512vl avx512_bf16)")" = "Haswell"
check "AVX2 without FMA: no Haswell" \
	test "$(types "$(cpu GenuineIntel avx avx2)")" = ""
check "AVX without AVX2: Sandybridge" \
	test "$(types "$(cpu GenuineIntel avx)")" = "Sandybridge"
check "SSE only: nothing beyond the default" \
	test "$(types "$(cpu GenuineIntel pni ssse3 sse4_1 sse4_2)")" = ""
check "a flag is a whole word (xavx2fma is not avx2)" \
	test "$(types "$(cpu GenuineIntel avx xavx2 fmax)")" = "Sandybridge"
run "$bench/coretypes" "$out/none"
check "unreadable cpuinfo: exit 2" test $rc -eq 2
check "unreadable cpuinfo: says so" err_has "cannot read"
printf 'processor\t: 0\n' >"$out/noflags"
run "$bench/coretypes" "$out/noflags"
check "cpuinfo without flags: exit 2" test $rc -eq 2
check "cpuinfo without flags: says so" err_has "no flags line"
run "$bench/coretypes"
check "the machine's own cpuinfo is read" test $rc -eq 0

# --pick: per workload and thread count, the least time per step over all
# tries and rounds; "default" is a type like the others
{
	echo "FACT quick=0"
	echo "CALIB workload=mlp64 threads=1 coretype=default steps=40 seconds=0.400 asked=default round=1"
	echo "CALIB workload=mlp64 threads=1 coretype=Haswell steps=40 seconds=0.300 asked=Haswell round=1"
	echo "CALIB workload=mlp64 threads=2 coretype=default steps=40 seconds=0.100 asked=default round=1"
	echo "CALIB workload=mlp64 threads=2 coretype=Haswell steps=40 seconds=0.200 asked=Haswell round=1"
	echo "CALIB workload=cnn threads=1 coretype=default steps=6 seconds=0.090 asked=default round=1"
	echo "CALIB workload=cnn threads=1 coretype=SkylakeX steps=6 seconds=0.120 asked=SkylakeX round=1"
	echo "CALIB workload=mlp64 threads=1 coretype=Haswell steps=40 seconds=0.500 asked=Haswell round=2"
	echo "CALIB workload=mlp64 threads=1 coretype=default steps=40 seconds=0.250 asked=default round=2"
	echo "CALIB workload=cnn threads=1 coretype=SkylakeX steps=6 seconds=0.060 asked=SkylakeX round=2"
	echo "CALIB workload=cnn threads=1 coretype=default steps=6 seconds=0.060 asked=default round=2"
	echo "CALIB workload=tiny threads=1 coretype=Zen steps=200 seconds=0.050 asked=default round=1"
	echo "CALIB workload=tiny threads=1 coretype=Haswell steps=100 seconds=0.030 asked=Haswell round=1"
} >"$out/calib"
run "$bench/coretypes" --pick "$out/calib"
check "--pick: exit 0" test $rc -eq 0
check "--pick: the fastest per workload and thread count, by time per step" \
	out_is "mlp64 1 default
mlp64 2 default
cnn 1 SkylakeX
tiny 1 default"
run "$bench/coretypes" --pick "$out/none"
check "--pick without a readable file: exit 2" test $rc -eq 2

# ---- run: bad usage stops before anything runs ---------------------------------------
# bad_usage NAME MESSAGE ARGS...: run exits 2 saying MESSAGE.  --build-dir
# points nowhere, so that even a missed check could not start a benchmark.
bad_usage() {
	local name=$1 msg=$2
	shift 2
	run timeout 60 "$bench/run" --build-dir "$out/nowhere" "$@"
	check "run $name: exit 2" test $rc -eq 2
	check "run $name: says '$msg'" grep -qF -- "$msg" "$TMP/err"
}
bad_usage "unknown option" "unknown argument '--fast'" --fast
bad_usage "stray word" "unknown argument 'mlp64'" mlp64
bad_usage "--quick with a value" "--quick takes no value" --quick=yes
bad_usage "--reps 0" "--reps must be a positive integer, got '0'" --reps 0
bad_usage "--reps=x" "--reps must be a positive integer, got 'x'" --reps=x
bad_usage "--reps without a value" "--reps needs a value" --reps
bad_usage "--threads 0" "thread counts must be positive integers, got '0'" --threads 0
bad_usage "--workloads unknown" "unknown workload 'gpt'" --workloads "mlp64 gpt"
bad_usage "--workloads empty" "--workloads is empty" --workloads " "
bad_usage "--env not VAR=VALUE" "--env expects VAR=VALUE, got 'FOO'" --env FOO
bad_usage "--env OPENBLAS_CORETYPE" "--env may not set OPENBLAS_CORETYPE" --env OPENBLAS_CORETYPE=Haswell
bad_usage "--env OMP_NUM_THREADS" "--env may not set OMP_NUM_THREADS" --env=OMP_NUM_THREADS=4
bad_usage "--coretype empty" "--coretype needs a value" --coretype=
bad_usage "--coretype never offered" "--coretype 'Prescott' is not one this CPU can run" \
	--coretype Prescott --quick
for ct in Haswell Zen SkylakeX; do
	if ! "$bench/coretypes" | grep -qx "$ct"; then
		bad_usage "--coretype $ct on a CPU without it" "--coretype '$ct' is not one this CPU can run" \
			--coretype "$ct"
	fi
done
bad_usage "--dist without a value" "--dist needs a value" --dist
bad_usage "--dist to no build" "--dist: $out/nowhere/lunet not found" --dist "$out/nowhere"
if [ "$("$1/lunet" -e 'io.write(tostring(lunet.dist.available))')" = false ]; then
	bad_usage "--dist to a build without MPI" "was built without MPI" --dist "$1"
fi
run timeout 10 "$bench/run" --help
check "run --help: exit 0" test $rc -eq 0
check "run --help shows --coretype and --quick" out_has "--coretype TYPE\] \[--quick\]"

# ---- report.py on a made-up run --------------------------------------------------
if ! command -v python3 >/dev/null; then
	echo "note: python3 missing, report.py not tested"
else
	# mlp64: the calibration chose Haswell, which the full runs confirm
	#   (medians: lunet 1.0, torch Haswell 2.2, torch default 3.3);
	# cnn: the calibration chose Haswell, but in full the default is faster
	#   (torch Haswell 2.0, default 1.5, lunet 0.5), so the reference is the
	#   default and Haswell's kernel report is wrong on purpose.
	{
		echo "FACT date=test"
		echo "FACT quick=1"
		echo "FACT openblas_default_core=Zen"
		echo "FACT coretype_candidates=default Haswell"
		echo "FACT fma_avx512_gflops=unsupported"
		echo "FACT fma_avx2_gflops=100.00"
		echo "CALIB side=torch workload=mlp64 threads=1 coretype=default blas_core=Zen steps=10 tries=3 seconds=0.030 asked=default round=1"
		echo "CALIB side=torch workload=mlp64 threads=1 coretype=Haswell blas_core=Haswell steps=10 tries=3 seconds=0.020 asked=Haswell round=1"
		echo "CALIB side=torch workload=cnn threads=1 coretype=default blas_core=Zen steps=10 tries=3 seconds=0.030 asked=default round=1"
		echo "CALIB side=torch workload=cnn threads=1 coretype=Haswell blas_core=Haswell steps=10 tries=3 seconds=0.020 asked=Haswell round=1"
		echo "CHOICE workload=mlp64 threads=1 coretype=Haswell"
		echo "CHOICE workload=cnn threads=1 coretype=Haswell"
		for rep in 1 2 3; do
			for wl in mlp64 cnn; do
				l=1.0; [ $wl = cnn ] && l=0.5
				echo "RESULT side=lunet workload=$wl threads=1 steps=100 samples=6400 seconds=$l" \
					"allocs_per_step=0 peak_rss_kb=1024 flops_per_step=1e9 needed_flops_per_step=5e8" \
					"gemm_s_per_step=0.02 blas_s_per_step=0.04 loss=0.5 rep=$rep"
			done
			h=$(echo "2.0 2.2 2.4" | cut -d' ' -f$rep) d=$(echo "3.0 3.3 3.6" | cut -d' ' -f$rep)
			echo "RESULT side=torch workload=mlp64 threads=1 coretype=Haswell blas_core=Haswell steps=100" \
				"samples=6400 seconds=$h peak_rss_kb=2048 loss=0.5 role=best rep=$rep"
			echo "RESULT side=torch workload=mlp64 threads=1 coretype=default blas_core=Zen steps=100" \
				"samples=6400 seconds=$d peak_rss_kb=2048 loss=0.5 role=default rep=$rep"
			echo "RESULT side=torch workload=cnn threads=1 coretype=Haswell blas_core=Zen steps=100" \
				"samples=6400 seconds=2.0 peak_rss_kb=2048 loss=0.5 role=best rep=$rep"
			echo "RESULT side=torch workload=cnn threads=1 coretype=default blas_core=Zen steps=100" \
				"samples=6400 seconds=1.5 peak_rss_kb=2048 loss=0.5 role=default rep=$rep"
		done
	} >"$out/raw"
	run python3 "$bench/report.py" "$out/raw"
	check "report.py: exit 0" test $rc -eq 0
	cp "$TMP/out" "$out/report"
	row() {  # the table row of SECTION that starts with "| WORKLOAD | 1 |"
		awk -v s="## $1" -v w="| $2 | 1 |" 'index($0, "## ") == 1 {on = ($0 == s)}
			on && index($0, w) == 1 {print; exit}' "$out/report"
	}
	check "report: quick runs are marked" grep -q '^\*\*Quick run\*\*' "$out/report"
	check "core types: mlp64 chose Haswell, confirmed (default 3.3 / chosen 2.2 = 1.50)" \
		test "$(row "The reference's OpenBLAS core type" mlp64)" = \
		"| mlp64 | 1 | 3 | **2** | Haswell | Haswell | 2.2 | 3.3 | 1.50 | **Haswell** |"
	check "core types: cnn's kernels were not those asked for; the default is the reference" \
		test "$(row "The reference's OpenBLAS core type" cnn)" = \
		"| cnn | 1 | 3 | **2** | Haswell | **Zen: not the kernels asked for** | 2 | 1.5 | 0.75 | **default** |"
	check "speed: mlp64 against Haswell 2.20x, against the default 3.30x" \
		test "$(row Speed mlp64)" = \
		"| mlp64 | 1 | 100 | 1 | 1 | 2 | 2.2 | Haswell | 6,400 | 2,909 | **2.20** | 3.30 |"
	check "speed: cnn against the faster default, 3.00x" \
		test "$(row Speed cnn)" = \
		"| cnn | 1 | 100 | 0.5 | 0.5 | 1.5 | 1.5 | default | 12,800 | 4,267 | **3.00** | 3.00 |"
	check "FMA peak: 100 GFLOP/s, ln_gemm 50 (0.50), cblas 25 (0.25), step 50 (0.50), torch 25 (0.25)" \
		test "$(row "Fraction of the FMA peak" mlp64)" = \
		"| mlp64 | 1 | 100 | 500 | 50 | **0.50** | 25 | 0.25 | 50 | **0.50** | 25 | 0.25 |"
	check "report: the processes that ran other kernels are named" \
		grep -q '^\*\*Warning:\*\* in some PyTorch processes OpenBLAS ran other kernels than asked for: Haswell ran Zen\.$' \
		"$out/report"
	check "calibration lines are kept in the raw results" \
		grep -q '^CALIB side=torch workload=cnn threads=1 coretype=Haswell' "$out/report"
	run python3 "$bench/report.py"
	check "report.py without a file: exit 2" test $rc -eq 2
	check "report.py without a file: says how to call it" err_has "^usage: report.py RAW_FILE"

	# dist_report.py: mlp256 one process 1.0, 1.2, 0.8 s (median 1.0), on
	# 2 ranks 0.6, 0.5, 0.55 (median 0.55: 1.82x) with 0.11 s (median) in
	# the allreduce (20%) and 2 ms alone.
	{
		for t in "1.0 0.6 0.10" "1.2 0.5 0.11" "0.8 0.55 0.12"; do
			read -r one two ar <<<"$t"
			echo "RESULT side=lunet-dist workload=mlp256 mode=plain ranks=1 threads=1 steps=100" \
				"samples=25600 seconds=$one samples_per_s=1 allreduce_s=0 allreduce_alone_s=0" \
				"allocs_per_step=0 loss=0.5"
			echo "RESULT side=lunet-dist workload=mlp256 mode=plain ranks=2 threads=1 steps=100" \
				"samples=25600 seconds=$two samples_per_s=1 allreduce_s=$ar allreduce_alone_s=0.002" \
				"allocs_per_step=0 loss=0.5"
		done
	} >"$out/distraw"
	run python3 "$bench/dist_report.py" "$out/distraw" 0.1 0.2
	check "dist_report.py: exit 0" test $rc -eq 0
	check "dist_report.py: speedup 1.82x, allreduce 20.0% of the step, 2 ms alone" \
		out_has '^\| mlp256 \| plain \| 2 \| 100 \| 1\.000 \| 0\.550 \| \*\*1\.82x\*\* \| 20\.0% \| 2\.000 \|$'
	check "dist_report.py: medians of 3 runs, the loads" out_has '^Medians of 3 runs each; .* 0\.1 before, 0\.2 after'
	run python3 "$bench/dist_report.py" "$out/nothing"
	check "dist_report.py without a readable file: exit 2" test $rc -eq 2
	run python3 "$bench/dist_report.py"
	check "dist_report.py without a file: says how to call it" err_has "^usage: dist_report.py RAW_FILE"
fi

# ---- dist: bad usage stops before anything runs ----------------------------------------
dist_usage() {
	local name=$1 msg=$2
	shift 2
	run timeout 60 "$bench/dist" --build-dir "$out/nowhere" "$@"
	check "dist $name: exit 2" test $rc -eq 2
	check "dist $name: says '$msg'" grep -qF -- "$msg" "$TMP/err"
}
dist_usage "unknown option" "unknown argument '--fast'" --fast
dist_usage "--reps 0" "--reps must be a positive integer, got '0'" --reps 0
dist_usage "--ranks 1" "--ranks must be 2 or more, got '1'" --ranks 1
dist_usage "--workloads unknown" "unknown workload 'tiny' (mlp256 cnn)" --workloads tiny
dist_usage "--modes unknown" "unknown mode 'fast' (plain after overlap)" --modes fast
dist_usage "--steps x" "--steps must be a positive integer, got 'x'" --steps x
dist_usage "no build" "$out/nowhere/lunet not found" --reps 1
if [ "$("$1/lunet" -e 'io.write(tostring(lunet.dist.available))')" = false ]; then
	run timeout 60 "$bench/dist" --build-dir "$1"
	check "dist on a build without MPI: exit 2" test $rc -eq 2
	check "dist on a build without MPI: says so" err_has "was built without MPI"
fi

finish
