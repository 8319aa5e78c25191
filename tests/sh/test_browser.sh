#!/bin/bash
# test_browser.sh BUILD_DIR SOURCE_DIR -- report.html in a real browser:
# experiments/fashion_mlp.lua trains two epochs on a tiny stand-in for
# Fashion-MNIST and a sweep of two toy runs is made; headless Chromium
# loads each report.html with every host name unresolvable, runs its
# script, and dumps the DOM and a screenshot.  Checked: the page's script
# ran (data-ready), each metric plot (train and test loss on one chart), the
# confusion matrix of the ten classes and the most confused pairs, the
# |delta| by depth chart and one chart per layer, the rows; the sweep's page
# lists its runs; no console message at all; no request made by the page
# (Chromium's net log: no request from the file's null origin).  The
# screenshots are kept in BUILD_DIR/test-artifacts/ and their paths printed.
#
# Skipped (exit 77) where Chromium is not installed.
set -u

BUILD=$(cd "${1:?usage: test_browser.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_browser.sh BUILD_DIR SOURCE_DIR}" && pwd)
LUNET="$BUILD/lunet"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
unset LUNET_INIT LUNET_RUN_DIR LUNET_SWEEP_CHECK

CHROMIUM=""
for c in chromium chromium-browser google-chrome; do
	if command -v "$c" >/dev/null; then CHROMIUM=$(command -v "$c"); break; fi
done
if [ -z "$CHROMIUM" ]; then
	echo "SKIP: no Chromium (Debian: apt install chromium)"
	exit 77
fi

. "$SRC/tests/sh/lib.sh"
exec </dev/null
ART="$BUILD/test-artifacts"
mkdir -p "$ART"

# ---- the pages ------------------------------------------------------------------------------

DATA="$TMP/fashion"
tiny_fashion "$DATA" 256 64
LUNET_RUNS="$TMP/runs" run "$LUNET" "$SRC/experiments/fashion_mlp.lua" --data="$DATA" --epochs=2
RUN=$(subdirs "$TMP/runs/fashion_mlp")
check "fashion_mlp writes report.html" bash -c "[ $rc -eq 0 ] && [ -s '$RUN/report.html' ]"
cp "$SRC/tests/sh/toy_experiment.lua" "$TMP/toy.lua"
LUNET_RUNS="$TMP/runs" run "$LUNET" sweep "$TMP/toy.lua" --lr=0.1,0.5 -j 2
SWEEP="$TMP/runs/toy-lr"
check "a sweep writes its report.html" bash -c "[ $rc -eq 0 ] && [ -s '$SWEEP/report.html' ]"

# browse NAME PAGE HEIGHT: loads PAGE; the DOM after its scripts ran in
# $TMP/NAME.dom, Chromium's stderr in $TMP/NAME.log, its net log in
# $TMP/NAME.net, the screenshot in $ART/NAME.png.  --no-sandbox: CI runs
# as root, where Chromium's sandbox refuses to start; --disable-dev-shm-usage:
# containers often have a small /dev/shm.
browse() {
	rm -rf "$TMP/profile"
	timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$TMP/profile" --host-resolver-rules="MAP * ~NOTFOUND" \
		--enable-logging=stderr --v=0 --log-net-log="$TMP/$1.net" \
		--window-size=1280,"$3" --screenshot="$ART/$1.png" --dump-dom "file://$2" \
		>"$TMP/$1.dom" 2>"$TMP/$1.log"
}

# in_dom NAME STRING: the DOM holds STRING (plain text).
in_dom() { grep -qF -- "$2" "$TMP/$1.dom"; }
# count NAME STRING: how many times.
count() { grep -oF -- "$2" "$TMP/$1.dom" | wc -l; }
# element NAME OPEN CLOSE: the text from the first OPEN to the next CLOSE.
element() {
	"$LUNET" -e "local t = io.open('$TMP/$1.dom'):read('a')
		local a = t:find([[$2]], 1, true)
		if a then local _, b = t:find([[$3]], a, true) io.write(t:sub(a, b)) end"
}
export -f element
export LUNET TMP
# quiet NAME: no console message, no request from the page.
quiet() {
	! grep -q ':CONSOLE' "$TMP/$1.log" && [ -s "$TMP/$1.net" ] && ! grep -q '"initiator":"null"' "$TMP/$1.net"
}
# png NAME: a PNG file of some size.
png() {
	[ "$(head -c 8 "$ART/$1.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] &&
		[ "$(wc -c <"$ART/$1.png")" -gt 20000 ]
}

# ---- the run's page -----------------------------------------------------------------------

browse report "$RUN/report.html" 3400
rc=$?
cp "$TMP/report.dom" "$TMP/out"
cp "$TMP/report.log" "$TMP/err"
check "Chromium loads the run's page" test $rc -eq 0
check "its script ran" in_dom report '<html lang="en" data-ready="true">'
for metric in loss test_accuracy seconds; do
	check "a plot of $metric" bash -c "[ \"\$(element report '<figure class=\"plot\" data-metric=\"$metric\">' '</figure>' |
		grep -c '<svg')\" -eq 1 ]"
done
check "train and test loss on one chart" bash -c "
	[ \$(element report '<figure class=\"plot\" data-metric=\"loss\">' '</figure>' | grep -o '<polyline' | wc -l) -eq 2 ]"
check "the confusion matrix of the ten classes" bash -c "
	[ \$(element report '<table id=\"confusion-matrix\"' '</table>' | grep -o '<tr>' | wc -l) -eq 12 ] &&
	element report '<table id=\"confusion-matrix\"' '</table>' | grep -qF '>Ankle boot</th>'"
check "the most confused pairs" bash -c "[ \$(element report '<ol id=\"confused-pairs\">' '</ol>' | grep -o '<li>' | wc -l) -ge 1 ]"
check "|delta| by depth" in_dom report '<figure class="depth-chart" id="depth-chart"><svg'
check "a delta chart per layer (5 layers)" test "$(count report '<figure class="layer-chart" data-layer=')" -eq 5
check "the logged rows" bash -c "[ \$(element report '<table id=\"rows-table\"' '</table>' | grep -o '<tr>' | wc -l) -eq 3 ]"
check "no console message, no request from the page" quiet report
check "a screenshot" png report
echo "screenshot of the run's report: $ART/report.png"

# ---- the sweep's page ---------------------------------------------------------------------

browse sweep "$SWEEP/report.html" 1400
rc=$?
cp "$TMP/sweep.dom" "$TMP/out"
cp "$TMP/sweep.log" "$TMP/err"
check "Chromium loads the sweep's page" test $rc -eq 0
check "its script ran" in_dom sweep '<html lang="en" data-ready="true">'
check "a row and a link per run" test "$(count sweep '/report.html">lr=')" -eq 2
check "a chart per metric, a line per run" bash -c "
	[ \$(element sweep '<figure class=\"plot\" data-metric=\"train_loss\">' '</figure>' | grep -o '<polyline' | wc -l) -eq 2 ]"
check "no console message, no request from the page" quiet sweep
check "a screenshot" png sweep
echo "screenshot of the sweep's report: $ART/sweep.png"

finish
