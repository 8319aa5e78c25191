#!/bin/bash
# test_sweep.sh BUILD_DIR SOURCE_DIR -- `lunet sweep` and `lunet runs` as a
# user runs them, on a toy script (a 2-4-2 network on 16 points, 3 epochs):
# mistakes in the grid or in the values as one line before anything runs;
# a sweep of 6 runs two at a time where two fail (their last stderr lines
# kept, the others finished); running it again, which skips the finished
# runs and resumes the failed ones from their checkpoints to the numbers of
# runs never stopped; Ctrl-C while runs are running (each stopped cleanly,
# resumed by the next sweep); `lunet runs` seeing a run running and then a
# run whose process was killed; --emit=parallel, whose command list GNU
# parallel runs two at a time (line by line where it is not installed),
# and --emit=slurm, whose tasks are run here one by one
# (tests/sh/test_slurm.sh submits the Slurm array to a real Slurm).
#
# Runs are held at a known point by a file (<hold>.on): the held run writes
# <hold>.<seed> and sleeps until it is interrupted, so that the test knows
# where a signal lands.  Nothing is timed; waits for a file have a bound
# that only tells a hang from a failure.
set -u

BUILD=$(cd "${1:?usage: test_sweep.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_sweep.sh BUILD_DIR SOURCE_DIR}" && pwd)
LUNET="$BUILD/lunet"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
unset LUNET_INIT LUNET_RUN_DIR LUNET_SWEEP_CHECK
export LUNET_RUNS="$TMP/runs"

. "$SRC/tests/sh/lib.sh"
exec </dev/null

TOY="$TMP/toy.lua"
cp "$SRC/tests/sh/toy_experiment.lua" "$TOY"

# wait_for FILE...: until every file exists (at most 60 s).
wait_for() {
	local i
	for i in $(seq 600); do
		local all=1 f
		for f in "$@"; do [ -e "$f" ] || all=0; done
		[ $all = 1 ] && return 0
		sleep 0.1
	done
	return 1
}

# csv_col FILE RUN COLUMN: the cell of sweep.csv in the row of RUN (a full
# CSV reader: run names hold commas, errors hold line breaks).
cat >"$TMP/csv_col.lua" <<'EOF'
local path, run, col = ...
local text = io.open(path):read("a")
local rows, row, cell, i = {}, {}, {}, 1
while i <= #text do
	local c = text:sub(i, i)
	if c == '"' then
		local j = i + 1
		while true do
			local q = text:find('"', j, true)
			cell[#cell + 1] = text:sub(j, q - 1)
			if text:sub(q + 1, q + 1) == '"' then cell[#cell + 1] = '"' j = q + 2 else i = q + 1 break end
		end
	elseif c == "," or c == "\n" then
		row[#row + 1] = table.concat(cell)
		cell = {}
		if c == "\n" then rows[#rows + 1] = row row = {} end
		i = i + 1
	else
		cell[#cell + 1] = c
		i = i + 1
	end
end
local at = {}
for k, name in ipairs(rows[1]) do at[name] = k end
for r = 2, #rows do
	if rows[r][1] == run then io.write(rows[r][at[col]] or "") return end
end
EOF
csv_col() { "$LUNET" "$TMP/csv_col.lua" "$@"; }
export -f csv_col
export LUNET TMP

# ---- help and mistakes -----------------------------------------------------------------

run "$LUNET" sweep --help
check "sweep --help" bash -c "[ $rc -eq 0 ] && grep -q '^usage: lunet sweep SCRIPT' '$TMP/out'"
run "$LUNET" runs --help
check "runs --help" bash -c "[ $rc -eq 0 ] && grep -q '^usage: lunet runs' '$TMP/out'"
run "$LUNET" --help
check "lunet --help lists the commands" bash -c "grep -q '^  sweep script.lua' '$TMP/out' && grep -q '^  runs ' '$TMP/out'"

one_line_error() {  # NAME EXPECTED-STDERR: exit 1, nothing on stdout, that one line, no runs
	check "$1" bash -c "[ $rc -eq 1 ] && [ ! -s '$TMP/out' ] && [ \"\$(cat '$TMP/err')\" = \"\$0\" ] &&
		[ ! -e '$TMP/runs' ]" "$2"
}
run "$LUNET" sweep "$TOY" --seed=1.. --lr=0.1
one_line_error "a bad range names the key" \
	"lunet: lunet sweep: --seed=1..: bad range '1..' (a range is lo..hi with integers lo <= hi; list other values: 0.1,0.2)"
run "$LUNET" sweep "$TOY" --lr=0.1,,0.2
one_line_error "an empty value names the key" "lunet: lunet sweep: --lr=0.1,,0.2: an empty value between commas"
run "$LUNET" sweep "$TOY" --lrr=0.1,0.2
one_line_error "a key the script lacks: the script's own one line, before any run" \
	"lunet: lunet sweep: $TOY does not take these values: lunet.experiment: unknown option --lrr (known: epochs, fail, hold, lr, seed)"
run "$LUNET" sweep "$TOY" --seed=1,two
one_line_error "a value of the wrong type" \
	"lunet: lunet sweep: $TOY does not take these values: lunet.experiment: bad value --seed=two: expected an integer (known: epochs, fail, hold, lr, seed)"
run "$LUNET" sweep "$TOY" --seed=1 --task=1
one_line_error "--task out of range" "lunet: lunet sweep: --task=1: the sweep has 1 configurations (tasks 0..0)"
run "$LUNET" sweep "$TMP/none.lua" --seed=1
one_line_error "a missing script" "lunet: lunet sweep: cannot read the script '$TMP/none.lua'"

# ---- a sweep where two runs fail ---------------------------------------------------------

touch "$TMP/fail.2"
run "$LUNET" sweep "$TOY" --lr=0.1,0.5 --seed=1..3 --fail="$TMP/fail" -j 2 --sort=test_accuracy
SW="$TMP/runs/toy-lr-seed"
check "sweep with failures: exit 1" test "$rc" -eq 1
check "six run directories" test "$(subdirs "$SW" | wc -l)" -eq 6
check "every run directory is complete" bash -c "for d in '$SW'/*/; do
	for f in config.lua status.lua metrics.csv report.html stdout.log stderr.log gradients.csv confusion.csv; do
		[ -f \"\$d\$f\" ] || { echo \"missing \$d\$f\"; exit 1; }; done; done"
check "the failures are reported with their stderr" bash -c "
	[ \$(grep -c 'FAILED after' '$TMP/out') -eq 2 ] &&
	grep -q '^\[2/6\] fail=_.*,lr=0.1,seed=2: FAILED after .* (exit status 1); the end of .*stderr.log:' '$TMP/out' &&
	grep -q '^    line one of the failure' '$TMP/out' &&
	grep -q '^    lunet: .*failing on purpose at epoch 2' '$TMP/out'"
check "the others finished" test "$(grep -c ': finished in ' "$TMP/out")" -eq 4
check "the last line counts them" grep -q "^lunet sweep toy-lr-seed: 4 finished, 2 failed; $SW/sweep.csv, sweep.md, report.html\$" "$TMP/out"
check "sweep.csv: header" test "$(head -1 "$SW/sweep.csv")" = "run,lr,seed,fail,status,epochs,test_accuracy,train_loss,error"
R2=$(cd "$SW" && ls -d *seed=2 | grep lr=0.1)
R1=$(cd "$SW" && ls -d *seed=1 | grep lr=0.1)
check "sweep.csv: a failed run, its epochs and the end of its stderr" bash -c "
	[ \"\$(csv_col '$SW/sweep.csv' '$R2' status)\" = failed ] &&
	[ \"\$(csv_col '$SW/sweep.csv' '$R2' epochs)\" = 1/3 ] &&
	grep -q 'line one of the failure' '$SW/sweep.csv'"
check "sweep.csv: a finished run and its final metrics" bash -c "
	[ \"\$(csv_col '$SW/sweep.csv' '$R1' status)\" = finished ] &&
	[ \"\$(csv_col '$SW/sweep.csv' '$R1' epochs)\" = 3/3 ] &&
	[ -n \"\$(csv_col '$SW/sweep.csv' '$R1' test_accuracy)\" ]"
check "status.lua of a failed run: failed, with its stderr" bash -c "
	grep -q 'status = \"failed\"' '$SW/$R2/status.lua' && grep -q 'stderr = \"line one of the failure' '$SW/$R2/status.lua'"
check "sweep.md: sorted by test_accuracy, largest first; the failed runs last, with their error" "$LUNET" -e "
	local acc, status, seen = {}, {}, false
	for line in io.lines('$SW/sweep.md') do
		local cells = {}
		for c in line:gmatch('|%s*([^|]-)%s*|') do cells[#cells + 1] = c end
		if line:find('^| run |') then seen = true
		elseif seen and line:find('^| ') then
			local fields = {}
			for f in (line:sub(2) .. ''):gmatch('%s*([^|]*)|') do fields[#fields + 1] = (f:gsub('%s+\$', '')) end
			status[#status + 1], acc[#acc + 1] = fields[5], tonumber(fields[7])
		end
	end
	assert(#acc == 6, 'six rows, got ' .. #acc)
	for i = 1, 4 do assert(status[i] == 'finished', 'finished first') end
	for i = 1, 3 do assert(acc[i] >= acc[i + 1], 'largest first') end
	assert(status[5] == 'failed' and status[6] == 'failed', 'failed last')
	local text = io.open('$SW/sweep.md'):read('a')
	assert(text:find('## Failed runs', 1, true) and text:find('failing on purpose at epoch 2', 1, true))
	assert(text:find('Sorted by test_accuracy, largest first.', 1, true))"
check "the sweep's report.html compares the runs" bash -c "
	grep -q '<table id=\"runs-table\" class=\"sortable\">' '$SW/report.html' &&
	[ \$(grep -c '<a href=\"[^\"]*/report.html\">' '$SW/report.html') -eq 6 ] &&
	grep -q '<section id=\"failed\">' '$SW/report.html' &&
	grep -q 'data-metric=\"test_accuracy\"' '$SW/report.html'"

# ---- again: finished runs skipped, failed ones resumed ----------------------------------

rm "$TMP/fail.2"
run "$LUNET" sweep "$TOY" --lr=0.1,0.5 --seed=1..3 --fail="$TMP/fail" -j 2 --sort=test_accuracy
check "again: exit 0" test "$rc" -eq 0
check "again: 4 skipped" test "$(grep -c ': finished already$' "$TMP/out")" -eq 4
check "again: 2 resumed from their checkpoints" test "$(grep -c ': resumed at epoch 1/3 (process [0-9]*)$' "$TMP/out")" -eq 2
check "again: every run finished" bash -c "[ \$(grep -c ',finished,3/3,' '$SW/sweep.csv') -eq 6 ]"
check "a resumed run says so in its config.lua and continues its metrics" bash -c "
	grep -q '^-- resumed ' '$SW/$R2/config.lua' && [ \"\$(cut -d, -f1 '$SW/$R2/metrics.csv' | tr '\n' ' ')\" = 'epoch 1 2 3 ' ]"
# The numbers of a run never stopped: the same script run alone.
LUNET_RUNS="$TMP/alone" run "$LUNET" "$TOY" --lr=0.1 --seed=2 --fail="$TMP/fail"
alone=$(subdirs "$TMP/alone/toy")
check "a resumed run ends with the numbers of a run never stopped" \
	diff "$alone/metrics.csv" "$SW/$R2/metrics.csv"

# ---- Ctrl-C -----------------------------------------------------------------------------------

touch "$TMP/hold.on"
"$LUNET" sweep "$TOY" --seed=1..3 --hold="$TMP/hold" -j 2 --name=held >"$TMP/held.out" 2>"$TMP/held.err" &
sweep_pid=$!
HELD="$TMP/runs/held"
if wait_for "$TMP/hold.1" "$TMP/hold.2"; then held_ok=1; else held_ok=0; fi
check "two runs reach the hold" test $held_ok -eq 1
run "$LUNET" runs "$HELD"
check "lunet runs: the two held runs are running, the third not started" bash -c "
	[ \$(grep -c ' running  *1/3 ' '$TMP/out') -eq 2 ] && [ \$(wc -l <'$TMP/out') -eq 3 ]"
pids=$(sed -n 's/^\tpid = \([0-9]*\),$/\1/p' "$HELD"/*/status.lua | tr '\n' ' ')
kill -INT $sweep_pid
wait $sweep_pid
rc=$?
cp "$TMP/held.out" "$TMP/out"
cp "$TMP/held.err" "$TMP/err"
check "Ctrl-C: exit 1 and one line" bash -c "[ $rc -eq 1 ] && [ \"\$(cat '$TMP/err')\" = \"lunet: lunet sweep: interrupted; 2 run(s) stopped, their checkpoints kept: run the same command again to go on\" ]"
check "Ctrl-C: each run stopped cleanly" bash -c "[ \$(grep -c ': interrupted after .*; its checkpoint is kept\$' '$TMP/out') -eq 2 ] &&
	[ \$(grep -l 'interrupted at epoch 2, .*; resume with --resume=' '$HELD'/*/stdout.log '$HELD'/*/stderr.log | wc -l) -eq 2 ]"
check "Ctrl-C: no run left running" bash -c "for p in $pids; do kill -0 \$p 2>/dev/null && exit 1; done; exit 0"
check "Ctrl-C: sweep.csv says interrupted, and pending for the run not started" bash -c "
	[ \$(grep -c ',interrupted,1/3,' '$HELD/sweep.csv') -eq 2 ] && [ \$(grep -c ',pending,,' '$HELD/sweep.csv') -eq 1 ]"
rm "$TMP/hold.on"
run "$LUNET" sweep "$TOY" --seed=1..3 --hold="$TMP/hold" -j 2 --name=held
check "after Ctrl-C: the same command resumes and finishes them" bash -c "[ $rc -eq 0 ] &&
	[ \$(grep -c ': resumed at epoch 1/3' '$TMP/out') -eq 2 ] && [ \$(grep -c ': started' '$TMP/out') -eq 1 ] &&
	[ \$(grep -c ',finished,3/3,' '$HELD/sweep.csv') -eq 3 ]"

# ---- lunet runs: a run whose process was killed ----------------------------------------------

touch "$TMP/hold.on"
LUNET_RUNS="$TMP/killed" "$LUNET" "$TOY" --seed=7 --hold="$TMP/hold" >/dev/null 2>&1 &
victim=$!
wait_for "$TMP/hold.7"
run "$LUNET" runs "$TMP/killed"
check "lunet runs: running" grep -q '^toy/[0-9-]*  .*  running  *1/3 ' "$TMP/out"
exec 3>&2 2>/dev/null  # without bash's note that the job was killed
kill -KILL $victim
wait $victim
exec 2>&3 3>&-
run "$LUNET" runs "$TMP/killed"
check "lunet runs: killed is interrupted" grep -q '^toy/[0-9-]*  .*  interrupted  *1/3 ' "$TMP/out"
rm "$TMP/hold.on"

run "$LUNET" runs
check "lunet runs: every run under \$LUNET_RUNS, config values that differ" bash -c "[ $rc -eq 0 ] &&
	[ \$(wc -l <'$TMP/out') -eq 10 ] &&
	head -1 '$TMP/out' | grep -q '^run  *started  *status  *epochs  *test_accuracy  *train_loss  *fail  *hold  *lr  *seed\$'"
run "$LUNET" runs --compare "$R1" "$R2"
check "lunet runs --compare: side by side, differences marked" bash -c "[ $rc -eq 0 ] &&
	grep -q '^\*   seed  *1  *2\$' '$TMP/out' && grep -q '^    lr  *0.1  *0.1\$' '$TMP/out' &&
	grep -q '^    test_accuracy ' '$TMP/out'"

cp "$TOY" "$TMP/other.lua"
run "$LUNET" sweep "$TMP/other.lua" --seed=1..3 --hold="$TMP/hold" --name=held
check "a sweep directory belongs to one script" bash -c "[ $rc -eq 1 ] && [ \"\$(cat '$TMP/err')\" = \
	\"lunet: lunet sweep: $HELD/ holds a sweep of toy.lua, not of other.lua: give this one another --name\" ]"

# ---- --emit ------------------------------------------------------------------------------------

run "$LUNET" sweep "$TOY" --lr=0.2 --seed=1..2 --emit=parallel --name=par -j 3
check "--emit=parallel: says how to run it" grep -q "^  parallel -j 3 < $TMP/runs/par/sweep.parallel\$" "$TMP/out"
check "--emit=parallel: a command per run" test "$(wc -l <"$TMP/runs/par/sweep.parallel")" -eq 2
check "--emit=parallel: nothing run yet" bash -c "[ \$(grep -c ',pending,' '$TMP/runs/par/sweep.csv') -eq 2 ]"
# GNU parallel (Debian's parallel) runs the list two at a time, as the
# sweep says; without it each line runs in turn.  Its files go to $TMP.
if parallel --version 2>/dev/null | grep -q '^GNU parallel'; then
	(cd / && HOME="$TMP" parallel -j 2 <"$TMP/runs/par/sweep.parallel" >>"$TMP/par.out" 2>&1)
	by="GNU parallel"
else
	echo "(GNU parallel is not installed: the commands of sweep.parallel run one after the other)"
	(cd / && while read -r line; do bash -c "$line" >>"$TMP/par.out" 2>&1; done <"$TMP/runs/par/sweep.parallel")
	by="bash"
fi
check "--emit=parallel: the commands, run by $by, run the runs and fill sweep.csv" bash -c "
	[ \$(grep -c ',finished,3/3,' '$TMP/runs/par/sweep.csv') -eq 2 ] &&
	[ \$(grep -c ': finished in ' '$TMP/par.out') -eq 2 ]"

# The commands start in the directory the sweep was emitted from, named
# plainly, whatever a stale $PWD says.
(cd "$TMP" && PWD=/ "$LUNET" sweep "$TOY" --lr=0.2 --seed=1..2 --emit=parallel --name=par2 >/dev/null)
check "--emit=parallel: the commands start in the current directory" bash -c "
	[ \$(grep -c '^cd $TMP && LUNET_RUNS=$TMP/runs ' '$TMP/runs/par2/sweep.parallel') -eq 2 ]"

run "$LUNET" sweep "$TOY" --lr=0.2,0.3 --seed=1..2 --emit=slurm --name=sl -j 2
SB="$TMP/runs/sl/sweep.sbatch"
check "--emit=slurm: says how to submit it" grep -q "^  sbatch $TMP/runs/sl/sweep.sbatch\$" "$TMP/out"
check "--emit=slurm: an array of 4 tasks, 2 at a time, a log per task" bash -c "
	grep -q '^#SBATCH --array=0-3%2\$' '$SB' && grep -q '^#SBATCH --output=$TMP/runs/sl/slurm/%A_%a.out\$' '$SB' &&
	grep -q '^#SBATCH --job-name=sl\$' '$SB' && [ -d '$TMP/runs/sl/slurm' ] &&
	grep -q '^# task 3: --lr=0.3 --seed=2\$' '$SB' &&
	grep -q '^exec .*/lunet sweep $TOY --lr=0.2,0.3 --seed=1..2 --name=sl --task=\"\$SLURM_ARRAY_TASK_ID\"\$' '$SB'"
(cd / && for i in 0 1 2 3; do SLURM_ARRAY_TASK_ID=$i bash "$SB" >>"$TMP/sl.out" 2>&1; done)
check "--emit=slurm: the tasks run the runs and fill sweep.csv" bash -c "
	[ \$(grep -c ',finished,3/3,' '$TMP/runs/sl/sweep.csv') -eq 4 ]"
check "--emit=slurm: a task reports its run, then the whole sweep" \
	grep -q "^lunet sweep sl: 1 finished (task 3; the sweep: 4 finished); $TMP/runs/sl/sweep.csv, " "$TMP/sl.out"
check "--emit=slurm: sweep.md gives the command of the whole sweep (no --task)" \
	grep -qx "\`lunet sweep $TOY --lr=0.2,0.3 --seed=1..2 --name=sl\`" "$TMP/runs/sl/sweep.md"
SLURM_ARRAY_TASK_ID=1 run bash "$SB"
check "--emit=slurm: a task run again skips its finished run" bash -c "[ $rc -eq 0 ] &&
	grep -q '^\[2/4\] lr=0.2,seed=2: finished already\$' '$TMP/out'"

finish
