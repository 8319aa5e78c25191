#!/bin/bash
# test_experiment_scripts.sh BUILD_DIR SOURCE_DIR -- the Fashion-MNIST
# scripts (experiments/fashion_mlp.lua, fashion_cnn.lua, resnet_fashion.lua) as a user runs
# them through lunet.experiment: --help, typed overrides, a mistake on the
# command line as one line, the run directory, a failure before the first
# logged row, Ctrl-C (with and without a terminal) and resuming, which
# must give the same numbers as a run that was never stopped.
#
# The data is a tiny stand-in for Fashion-MNIST (random images and labels
# in the same gzip'd IDX files), so that each run takes a moment.  Ctrl-C
# is a real SIGINT, sent by the process to itself from exp:progress at a
# chosen epoch and step (stop_hook.lua, through LUNET_INIT), so that where
# it lands is known.
#
# The checks come from lib.sh; the script ends with "N passed, M failed"
# and exits non-zero if anything failed.
set -u

BUILD=$(cd "${1:?usage: test_experiment_scripts.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_experiment_scripts.sh BUILD_DIR SOURCE_DIR}" && pwd)
LUNET="$BUILD/lunet"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
unset LUNET_INIT LUNET_RUNS

. "$SRC/tests/sh/lib.sh"
exec </dev/null  # no run reads its input


# ---- a tiny Fashion-MNIST -------------------------------------------------------

DATA="$TMP/fashion"
tiny_fashion "$DATA" 256 64

# Sends a SIGINT to this process from exp:progress once the run has logged
# STOP_ROWS rows and reached item STOP_STEP of the current loop.
cat >"$TMP/stop_hook.lua" <<'EOF'
local rows, step = tonumber(os.getenv("STOP_ROWS")), tonumber(os.getenv("STOP_STEP"))
local new = lunet.experiment
lunet.experiment = function(opts)
	local exp = new(opts)
	local progress = getmetatable(exp).progress
	function exp:progress(i, n, extra)
		progress(self, i, n, extra)
		if #self.metrics == rows and i == step then io.popen("kill -INT $PPID"):close() end
	end
	return exp
end
EOF

# ---- each script ---------------------------------------------------------------------

for name in fashion_mlp fashion_cnn resnet_fashion; do
	script="$SRC/experiments/$name.lua"
	if [ "$name" = fashion_cnn ]; then
		small=(--batch=32 --c1=2 --c2=4 --hidden=8)
	elif [ "$name" = resnet_fashion ]; then
		small=(--batch=32 --c1=2 --c2=2 --c3=4)
	else
		small=()
	fi
	args=(--data="$DATA" --epochs=3 "${small[@]}")

	# --help: every option with a type and a meaning; --data, not --dir.
	run "$LUNET" "$script" --help
	check "$name --help exits 0" test "$rc" -eq 0
	check "$name --help lists --data" out_has '^  --data=""  +string  +directory holding the Fashion-MNIST'
	check "$name --help has no --dir" bash -c "! grep -q -- '--dir' '$TMP/out'"
	nopts=$(grep -cE '^  --[a-z_]+=' "$TMP/out")
	check "$name --help lists the options" test "$nopts" -ge 6
	check "$name --help: each option has a type and a meaning" \
		bash -c "grep -E '^  --[a-z_]+=' '$TMP/out' | awk 'NF < 3 { bad = 1 } END { exit bad }'"

	# A mistake on the command line: one line on stderr, nothing else.
	run "$LUNET" "$script" --epochs=two
	check "$name bad override: exit 1, nothing on stdout" test "$rc" -eq 1 -a ! -s "$TMP/out"
	check "$name bad override: the line says what is wrong" \
		bash -c "[ \$(wc -l <'$TMP/err') -eq 1 ] &&
			grep -q '^lunet: lunet.experiment: bad value --epochs=two: expected an integer (known: .*data.*)\$' '$TMP/err'"
	run "$LUNET" "$script" --dir="$DATA"
	check "$name --dir is an unknown option, in one line" \
		bash -c "[ $rc -eq 1 ] && [ \$(wc -l <'$TMP/err') -eq 1 ] &&
			grep -q '^lunet: lunet.experiment: unknown option --dir (known: .*data.*)\$' '$TMP/err'"

	# A run that fails before its first row leaves no run directory.
	LUNET_RUNS="$TMP/runs_fail" run "$LUNET" "$script" --data="$TMP/nowhere"
	check "$name missing data: fails" \
		bash -c "[ $rc -eq 1 ] && grep -q 'data.fashion_mnist: cannot find $TMP/nowhere/' '$TMP/err'"
	check "$name missing data: no run directory left" test -z "$(subdirs "$TMP/runs_fail")"
	check "$name missing data: says so" out_has "^$name: nothing logged; run directory .* removed\$"

	# A whole run: run directory, metrics, checkpoint, plots, summary.
	LUNET_RUNS="$TMP/straight" run "$LUNET" "$script" "${args[@]}"
	straight=$(subdirs "$TMP/straight/$name")
	check "$name runs" test "$rc" -eq 0
	check "$name writes its run directory" bash -c "cd '$straight' &&
		[ -f config.lua ] && [ -f checkpoint.lunet ] && [ -f train_loss.svg ] &&
		[ -f test_accuracy.svg ] && [ \$(wc -l <metrics.csv) -eq 4 ] && [ -f report.html ] &&
		grep -q 'status = \"finished\"' status.lua && [ ! -e lock ] &&
		[ \$(wc -l <gradients.csv) -gt 3 ] && [ \$(wc -l <confusion.csv) -eq 11 ] &&
		[ \"\$(head -1 metrics.csv)\" = epoch,seconds,test_accuracy,test_loss,train_loss ]"
	check "$name prints the summary" out_has "^$name: final epoch 3  seconds .*  test_accuracy .*  train_loss "
	check "$name records the override" grep -q -- "--data=$DATA --epochs=3" "$straight/config.lua"

	# Ctrl-C in epoch 3 at step 3: the summary, then one line on stderr.
	STOP_ROWS=2 STOP_STEP=3 LUNET_INIT="@$TMP/stop_hook.lua" LUNET_RUNS="$TMP/int" \
		run "$LUNET" "$script" "${args[@]}"
	dir=$(subdirs "$TMP/int/$name")
	check "$name Ctrl-C: exit 1" test "$rc" -eq 1
	check "$name Ctrl-C: one line, where and how to resume" \
		err_is "lunet: interrupted at epoch 3, step 3; resume with --resume=$dir"
	check "$name Ctrl-C: the summary on its own line" out_has "^$name: final epoch 2  seconds "
	check "$name Ctrl-C: two rows kept" test "$(wc -l <"$dir/metrics.csv")" -eq 3

	# Resuming finishes the run with the numbers of the run never stopped.
	run "$LUNET" "$script" --resume="$dir"
	check "$name --resume: runs" test "$rc" -eq 0
	check "$name --resume: continues after epoch 2" out_has '^resumed after epoch 2$'
	check "$name --resume: same losses and accuracies as the straight run" \
		bash -c "diff <(cut -d, -f1,3- '$straight/metrics.csv') <(cut -d, -f1,3- '$dir/metrics.csv')"
	check "$name --resume: recorded in config.lua" grep -q -- "^-- resumed .* at epoch 2, " "$dir/config.lua"

	# Ctrl-C before the first row: nothing to resume, nothing left.
	STOP_ROWS=0 STOP_STEP=3 LUNET_INIT="@$TMP/stop_hook.lua" LUNET_RUNS="$TMP/int0" \
		run "$LUNET" "$script" "${args[@]}"
	check "$name early Ctrl-C: one line" \
		err_is "lunet: interrupted at epoch 1, step 3; nothing was logged, so the run directory was removed"
	check "$name early Ctrl-C: no run directory left" test -z "$(subdirs "$TMP/int0/$name")"
done

# --dist (tests/mpi/ runs it under mpirun): without MPI in the build, one
# line saying so; with it, outside mpirun, a job of one rank that trains as
# one process does.
if [ "$("$LUNET" -e 'io.write(tostring(lunet.dist.available))')" = false ]; then
	LUNET_RUNS="$TMP/nodist" run "$LUNET" "$SRC/experiments/fashion_mlp.lua" --data="$DATA" --dist
	check "--dist without MPI: one line, nothing left" \
		bash -c "[ $rc -eq 1 ] && [ ! -d '$TMP/nodist' ] && [ \$(wc -l <'$TMP/err') -eq 1 ] &&
			grep -q '^lunet: lunet.experiment: --dist needs lunet.dist, but this lunet was built without MPI (configure it with cmake -DLUNET_MPI=ON)\$' '$TMP/err'"
else
	LUNET_RUNS="$TMP/dist1" run "$LUNET" "$SRC/experiments/fashion_mlp.lua" --data="$DATA" \
		--epochs=3 --dist
	check "--dist alone: the numbers of one process" bash -c "[ $rc -eq 0 ] && diff \
		<(cut -d, -f1,3- \$(find '$TMP/straight/fashion_mlp' -name metrics.csv)) \
		<(cut -d, -f1,3- \$(find '$TMP/dist1/fashion_mlp' -name metrics.csv))"
fi

# On a terminal (script(1) gives a pseudo-terminal): the progress bar is
# erased before the summary, which starts its own line.
if command -v script >/dev/null; then
	name=fashion_cnn
	STOP_ROWS=2 STOP_STEP=3 LUNET_INIT="@$TMP/stop_hook.lua" LUNET_RUNS="$TMP/tty" \
		timeout 120 script -qec "'$LUNET' '$SRC/experiments/$name.lua' --data='$DATA' --epochs=3 \
		--batch=32 --c1=2 --c2=4 --hidden=8" /dev/null </dev/null >"$TMP/tty.out" 2>"$TMP/err"
	rc=$?
	tr -d '\r' <"$TMP/tty.out" >"$TMP/out"
	dir=$(subdirs "$TMP/tty/$name")
	check "tty: a progress bar was drawn" grep -qE '\] [1-8]/8 .* it/s' "$TMP/tty.out"
	check "tty: the bar is erased, then the summary" grep -q $'\r\033\\[K'"$name: final epoch 2 " "$TMP/tty.out"
	check "tty: one line for the interrupt" out_has "^lunet: interrupted at epoch 3, step 3; resume with --resume=$dir\$"
	check "tty: no traceback" bash -c "! grep -q traceback '$TMP/out'"
fi

finish
