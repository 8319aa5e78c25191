# lib.sh -- the checks shared by the shell tests of the runner and the
# scripts (test_cli.sh, test_experiment_scripts.sh, test_bench.sh).
# Sourced after TMP is set; its name does not match test_*.sh, so CTest
# does not run it alone.
#
#   run CMD...          runs CMD with stdin as the caller redirected it (input
#                       is written to a file first, never piped, which would
#                       run `run` in a subshell); sets rc, and leaves stdout
#                       and stderr in $TMP/out and $TMP/err
#   check NAME COND...  counts COND (a command, usually a test or grep) as
#                       passed or failed; a sanitizer report in $TMP/err fails
#                       it too (under the sanitizer build the environment
#                       comes from CTest)
#   finish              prints "N passed, M failed"; its status is that of the
#                       suite
#   subdirs DIR         the directories directly under DIR (none if DIR does
#                       not exist)
#   tiny_fashion DIR NTRAIN NTEST
#                       writes a tiny stand-in for Fashion-MNIST into DIR
#                       (make_fashion.lua, gzip'd; needs $LUNET and $SRC), or
#                       ends the suite as failed
# Each failure prints FAIL with what it expected and what arrived.

passed=0
failed=0

fail() {
	failed=$((failed + 1))
	echo "FAIL: $1"
	shift
	for line in "$@"; do echo "    $line"; done
	echo "    --- stdout:"; sed 's/^/    | /' "$TMP/out"
	echo "    --- stderr:"; sed 's/^/    | /' "$TMP/err"
}

run() {
	"$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
}

check() {
	local name=$1
	shift
	if grep -qE 'Sanitizer|runtime error:' "$TMP/err"; then
		fail "$name" "sanitizer report in stderr"
	elif "$@"; then
		passed=$((passed + 1))
	else
		fail "$name" "condition: $*" "exit code: $rc"
	fi
}

out_has() { grep -qE -- "$1" "$TMP/out"; }
err_has() { grep -qE -- "$1" "$TMP/err"; }
out_is() { [ "$(cat "$TMP/out")" = "$1" ]; }
err_is() { [ "$(cat "$TMP/err")" = "$1" ]; }

finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

subdirs() { find "$1" -mindepth 1 -maxdepth 1 -type d 2>/dev/null; }

tiny_fashion() {
	mkdir -p "$1"
	if ! "$LUNET" "$SRC/tests/sh/make_fashion.lua" "$1" "$2" "$3" || ! gzip -nf "$1"/*; then
		echo "FAIL: cannot make the test data in $1"
		echo "0 passed, 1 failed"
		exit 1
	fi
}
