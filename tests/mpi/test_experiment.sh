#!/bin/bash
# test_experiment.sh MPIRUN BUILD_DIR SOURCE_DIR -- the Fashion-MNIST
# scripts under mpirun, through lunet.experiment: with --dist (or started by
# mpirun without it) one run directory, written by rank 0 alone, and one
# copy of the output; the numbers of one process trained with the same
# global batch (fashion_mlp, on 2 ranks and on 3, where the batch does not
# divide evenly); a job whose rank fails, resumed under mpirun, giving the
# numbers of a job never stopped.  Data: the tiny stand-in of tests/sh/make_fashion.lua.
#
# The checks come from tests/sh/lib.sh; the script ends with "N passed, M
# failed" and exits non-zero if anything failed.
set -u

MPIRUN=${1:?usage: test_experiment.sh MPIRUN BUILD_DIR SOURCE_DIR}
BUILD=$(cd "${2:?usage: test_experiment.sh MPIRUN BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${3:?usage: test_experiment.sh MPIRUN BUILD_DIR SOURCE_DIR}" && pwd)
LUNET="$BUILD/lunet"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
unset LUNET_INIT LUNET_RUNS

. "$SRC/tests/sh/lib.sh"
exec </dev/null

# mpi NP ARGS...: the lunet runner on NP ranks, bounded in time.
mpi() { timeout --kill-after=5 120 "$MPIRUN" --oversubscribe -np "$@"; }

DATA="$TMP/fashion"
tiny_fashion "$DATA" 200 64
MLP="$SRC/experiments/fashion_mlp.lua"
CNN="$SRC/experiments/fashion_cnn.lua"

# One process: the reference numbers.  200 images in batches of 48 make
# four batches and a last one of 8, cut 24+24 on two ranks and 16+16+16 on
# three; 3+3+2 for the last.
LUNET_RUNS="$TMP/one" run "$LUNET" "$MLP" --data="$DATA" --epochs=2 --batch=48
one=$(subdirs "$TMP/one/fashion_mlp")
check "one process runs" test "$rc" -eq 0 -a -f "$one/metrics.csv"

for np in 2 3; do
	LUNET_RUNS="$TMP/d$np" run mpi "$np" "$LUNET" "$MLP" --data="$DATA" --epochs=2 --batch=48 --dist
	dirs=$(subdirs "$TMP/d$np/fashion_mlp")
	check "np=$np --dist runs" test "$rc" -eq 0
	check "np=$np one run directory" test "$(echo "$dirs" | grep -c .)" -eq 1
	check "np=$np rank 0 writes it all" bash -c "cd '$dirs' && [ -f config.lua ] &&
		[ -f checkpoint.lunet ] && [ -f train_loss.svg ] && [ \$(wc -l <metrics.csv) -eq 3 ]"
	check "np=$np says it, once" test "$(grep -c "^fashion_mlp: data parallel on $np ranks\$" "$TMP/out")" -eq 1
	check "np=$np one copy of the output" test "$(grep -c '^final test accuracy' "$TMP/out")" -eq 1
	check "np=$np one summary" test "$(grep -c '^fashion_mlp: final epoch 2 ' "$TMP/out")" -eq 1
	# the same losses and accuracies as one process, to float32 rounding
	check "np=$np the numbers of one process" "$LUNET" -e "
		local function rows(path)
			local t = {}
			for line in io.lines(path) do t[#t + 1] = line end
			return t
		end
		local a, b = rows('$one/metrics.csv'), rows('$dirs/metrics.csv')
		assert(a[1] == 'epoch,seconds,test_accuracy,test_loss,train_loss' and a[1] == b[1], 'header')
		assert(#a == 3 and #b == 3, 'rows')
		for i = 2, 3 do
			local ea, _, acc_a, tl_a, loss_a = a[i]:match('^(%d+),([^,]*),([^,]*),([^,]*),([^,]*)$')
			local eb, _, acc_b, tl_b, loss_b = b[i]:match('^(%d+),([^,]*),([^,]*),([^,]*),([^,]*)$')
			assert(ea == eb, 'epoch')
			assert(tonumber(acc_a) == tonumber(acc_b), 'accuracy ' .. acc_a .. ' vs ' .. acc_b)
			local ta, tb = tonumber(tl_a), tonumber(tl_b)
			assert(math.abs(ta - tb) <= 1e-6 * ta, 'test loss ' .. ta .. ' vs ' .. tb)
			local la, lb = tonumber(loss_a), tonumber(loss_b)
			assert(math.abs(la - lb) <= 1e-6 * la, 'train loss ' .. la .. ' vs ' .. lb)
		end"
done

# Started by mpirun, without --dist: the same (launched() turns it on).
LUNET_RUNS="$TMP/auto" run mpi 2 "$LUNET" "$MLP" --data="$DATA" --epochs=1 --batch=48
check "mpirun alone turns dist on" bash -c "[ $rc -eq 0 ] &&
	[ \$(find '$TMP/auto/fashion_mlp' -mindepth 1 -maxdepth 1 -type d | wc -l) -eq 1 ]"
check "mpirun alone: data parallel" out_has "^fashion_mlp: data parallel on 2 ranks\$"
check "mpirun alone: config records dist" grep -q '^	dist = true,$' "$(subdirs "$TMP/auto/fashion_mlp")/config.lua"

# --resume under mpirun: a job that fails in epoch 2 (rank 0 raises from
# exp:progress, through LUNET_INIT), resumed, gives the numbers of a job
# never stopped.
cat >"$TMP/fail_hook.lua" <<'EOF'
local new = lunet.experiment
lunet.experiment = function(opts)
	local exp = new(opts)
	local progress = getmetatable(exp).progress
	function exp:progress(i, n, extra)
		progress(self, i, n, extra)
		if self.rank == 0 and #self.metrics == 1 and i == 2 then error("stopped on purpose") end
	end
	return exp
end
EOF
LUNET_RUNS="$TMP/straight" run mpi 2 "$LUNET" "$MLP" --data="$DATA" --epochs=3 --batch=48 --dist
straight=$(subdirs "$TMP/straight/fashion_mlp")
check "3 epochs straight" test "$rc" -eq 0
LUNET_INIT="@$TMP/fail_hook.lua" LUNET_RUNS="$TMP/resumed" \
	run mpi 2 "$LUNET" "$MLP" --data="$DATA" --epochs=3 --batch=48 --dist
resumed=$(subdirs "$TMP/resumed/fashion_mlp")
check "a rank failing in epoch 2 ends the job" bash -c "[ $rc -ne 0 ] &&
	grep -q 'stopped on purpose' '$TMP/err' && grep -q 'rank 0 of 2 failed' '$TMP/err'"
check "the job left epoch 1 and its checkpoint" bash -c "[ -f '$resumed/checkpoint.lunet' ] &&
	[ \$(wc -l <'$resumed/metrics.csv') -eq 2 ]"
run mpi 2 "$LUNET" "$MLP" --resume="$resumed"
check "--resume under mpirun runs" test "$rc" -eq 0
check "--resume: continues after epoch 1, said once" \
	test "$(grep -c '^resumed after epoch 1$' "$TMP/out")" -eq 1
check "--resume: the numbers of the run never stopped" \
	bash -c "diff <(cut -d, -f1,3- '$straight/metrics.csv') <(cut -d, -f1,3- '$resumed/metrics.csv')"
check "--resume: no second run directory" test "$(subdirs "$TMP/resumed/fashion_mlp" | grep -c .)" -eq 1

# fashion_cnn (BatchNorm, Dropout: not equal to one process, see the README).
LUNET_RUNS="$TMP/cnn" run mpi 2 "$LUNET" "$CNN" --data="$DATA" --epochs=2 --batch=32 --c1=2 --c2=4 \
	--hidden=8 --dist
cnn=$(subdirs "$TMP/cnn/fashion_cnn")
check "fashion_cnn --dist runs" bash -c "[ $rc -eq 0 ] && [ -f '$cnn/checkpoint.lunet' ] &&
	[ \$(wc -l <'$cnn/metrics.csv') -eq 3 ]"
check "fashion_cnn one copy of the output" test "$(grep -c '^final test accuracy' "$TMP/out")" -eq 1

finish
