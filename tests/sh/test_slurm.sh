#!/bin/bash
# test_slurm.sh BUILD_DIR SOURCE_DIR -- the Slurm array job that
# `lunet sweep --emit=slurm` writes, submitted to a real Slurm: a
# single-node cluster (Debian's slurm-wlm, authenticated by its own munged)
# configured and started in a temporary directory, without cgroups, on
# ports that are free, the daemons children of the test; `sbatch` of the
# emitted sweep.sbatch; a wait for the array to drain; then every run
# directory, each task's log, sweep.csv, sweep.md and the sweep's
# report.html are checked.  The daemons are stopped and the directory
# removed however the test ends (a kill of the test's process tree, as
# CTest's timeout does, ends the daemons but leaves the directory).
#
# Skipped (exit 77, the reason printed) where slurm-wlm or munge is not
# installed, or where slurmd cannot start for want of privileges (it runs
# jobs as their users, which takes root).  Run as root, a cluster that does
# not come up is a failure.
set -u

BUILD=$(cd "${1:?usage: test_slurm.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_slurm.sh BUILD_DIR SOURCE_DIR}" && pwd)
LUNET="$BUILD/lunet"
TMP=$(mktemp -d)
unset LUNET_INIT LUNET_RUN_DIR LUNET_SWEEP_CHECK

skip() {
	echo "SKIP: $*"
	exit 77
}

for cmd in slurmctld slurmd sbatch squeue scontrol sinfo munged; do
	command -v "$cmd" >/dev/null || skip "$cmd is not installed (Debian: apt install slurm-wlm munge)"
done

. "$SRC/tests/sh/lib.sh"
exec </dev/null

# ---- a cluster of one node -------------------------------------------------------------

export SLURM_CONF="$TMP/slurm.conf"
# The daemons run in the foreground as children of this script, so that
# whatever ends the script (CTest's timeout kills the script's process
# tree) ends them too.
MUNGED="" CTLD="" SLURMD=""
stop_cluster() {
	local p
	for p in $SLURMD $CTLD $MUNGED; do kill "$p" 2>/dev/null; done
	# slurmctld saves its state on the way out: let it finish before removing.
	for _ in $(seq 50); do
		alive=""
		for p in $SLURMD $CTLD $MUNGED; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ -z "$alive" ] && break
		sleep 0.1
	done
	for p in $SLURMD $CTLD $MUNGED; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap stop_cluster EXIT

# A TCP port nothing listens on, from 20000..59999.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		(echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo $p; return; }
	done
}

# not_up REASON LOG: a failure when root could have started it; a skip otherwise.
not_up() {
	echo "--- $2:"
	tail -n 20 "$2" 2>/dev/null
	if [ "$(id -u)" -eq 0 ]; then
		echo "FAIL: $1"
		echo "0 passed, 1 failed"
		exit 1
	fi
	skip "$1 (not root: slurmd needs the privileges to run jobs as their users)"
}

mkdir -p "$TMP/munge" "$TMP/state" "$TMP/spool"
chmod 700 "$TMP/munge"
head -c 128 /dev/urandom >"$TMP/munge/munge.key"
chmod 600 "$TMP/munge/munge.key"
# alive PID: the daemon PID still runs.
alive() { kill -0 "$1" 2>/dev/null; }
munged -F -f --socket="$TMP/munge/sock" --key-file="$TMP/munge/munge.key" --log-file="$TMP/munge/log" \
	--pid-file="$TMP/munge/pid" --seed-file="$TMP/munge/seed" >"$TMP/munge/out" 2>&1 &
MUNGED=$!
for _ in $(seq 100); do
	[ -S "$TMP/munge/sock" ] || ! alive $MUNGED && break
	sleep 0.1
done
[ -S "$TMP/munge/sock" ] && alive $MUNGED || not_up "munged does not start" "$TMP/munge/out"

HOST=$(hostname -s)
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
while [ "$SLURMD_PORT" = "$CTLD_PORT" ]; do SLURMD_PORT=$(free_port); done
cat >"$SLURM_CONF" <<EOF
ClusterName=lunettest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$TMP/munge/sock
CredType=cred/munge
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=lunet Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -D -c >"$TMP/slurmctld.out" 2>&1 &
CTLD=$!
slurmd -D -N "$HOST" >"$TMP/slurmd.out" 2>&1 &
SLURMD=$!
up=0
for _ in $(seq 300); do
	alive $CTLD || not_up "slurmctld does not start" "$TMP/slurmctld.log"
	alive $SLURMD || not_up "slurmd does not start" "$TMP/slurmd.log"
	if [ "$(sinfo -h -n "$HOST" -o %t 2>/dev/null)" = idle ]; then up=1; break; fi
	sleep 0.1
done
[ $up = 1 ] || not_up "the node does not come up ($(sinfo -h -o %t 2>&1))" "$TMP/slurmd.log"
echo "slurm: node $HOST idle (slurmctld on port $CTLD_PORT, slurmd on port $SLURMD_PORT)"

# ---- the sweep, emitted and submitted ---------------------------------------------------

export LUNET_RUNS="$TMP/runs"
TOY="$TMP/toy.lua"
cp "$SRC/tests/sh/toy_experiment.lua" "$TOY"
run "$LUNET" sweep "$TOY" --lr=0.1,0.5 --seed=1..2 --emit=slurm -j 2
SW="$TMP/runs/toy-lr-seed"
check "--emit=slurm writes sweep.sbatch" bash -c "[ $rc -eq 0 ] && [ -f '$SW/sweep.sbatch' ]"

run sbatch --parsable "$SW/sweep.sbatch"
job=$(cut -d';' -f1 "$TMP/out")
check "sbatch takes the array" bash -c "[ $rc -eq 0 ] && [ -n '$job' ]"
drained=0
for _ in $(seq 1200); do  # at most 2 minutes
	if [ -z "$(squeue -h -j "$job" 2>/dev/null)" ]; then drained=1; break; fi
	sleep 0.1
done
check "the array runs to its end" test $drained -eq 1
run scontrol show job "$job"
check "every task completed" bash -c "[ \$(grep -c 'JobState=COMPLETED' '$TMP/out') -eq 4 ] &&
	! grep -q 'JobState=FAILED' '$TMP/out'"

check "a log per task, each reporting its run finished" bash -c "
	[ \$(ls '$SW/slurm' | grep -c '^${job}_[0-3]\.out\$') -eq 4 ] &&
	for i in 0 1 2 3; do grep -q ': finished in ' '$SW/slurm/${job}_'\$i'.out' || exit 1; done"
check "every run directory is complete" bash -c "[ \$(ls -d '$SW'/*/ | grep -vc '/slurm/\$') -eq 4 ] &&
	for d in '$SW'/lr=*/; do
		for f in config.lua metrics.csv checkpoint.lunet report.html gradients.csv confusion.csv; do
			[ -s \"\$d\$f\" ] || { echo \"missing \$d\$f\"; exit 1; }
		done
		grep -q 'status = \"finished\"' \"\$d/status.lua\" && [ \$(wc -l <\"\$d/metrics.csv\") -eq 4 ] || exit 1
	done"
check "sweep.csv: the four runs, finished" bash -c "[ \$(wc -l <'$SW/sweep.csv') -eq 5 ] &&
	[ \$(grep -c ',finished,3/3,' '$SW/sweep.csv') -eq 4 ]"
check "sweep.md and report.html of the sweep" bash -c "[ \$(grep -c '| finished | 3/3 |' '$SW/sweep.md') -eq 4 ] &&
	[ \$(grep -c '<a href=\"lr=[^\"]*/report.html\">' '$SW/report.html') -eq 4 ]"
if [ "$failed" -gt 0 ]; then
	echo "--- slurmctld.log:"; tail -n 30 "$TMP/slurmctld.log"
	echo "--- slurmd.log:"; tail -n 30 "$TMP/slurmd.log"
	for f in "$SW"/slurm/*.out; do echo "--- $f:"; cat "$f"; done
fi
finish
