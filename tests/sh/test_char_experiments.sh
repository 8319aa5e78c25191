#!/bin/bash
# test_char_experiments.sh BUILD_DIR SOURCE_DIR -- the character-level
# experiments (experiments/char_lstm.lua, char_transformer.lua) run for a
# few steps of tiny models on a tiny corpus (--text=FILE): --help, the run
# directory and its files, one metrics row per epoch with a finite
# validation loss in bits per byte below that of a uniform guess over the
# corpus's bytes, samples of the asked length drawn from the corpus's
# bytes, resuming, --steps, and a text too short for one batch.  With PyTorch
# installed, the PyTorch twins (experiments/bench/char_torch.py) run the
# same configuration and prints its epoch lines.
set -u

BUILD=$(cd "${1:?usage: test_char_experiments.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_char_experiments.sh BUILD_DIR SOURCE_DIR}" && pwd)
LUNET="$BUILD/lunet"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
unset LUNET_INIT LUNET_RUNS

. "$SRC/tests/sh/lib.sh"
exec </dev/null

# A tiny corpus: 60 short lines over 16 distinct bytes (log2 16 = 4 bits).
TEXT="$TMP/tiny.txt"
for i in $(seq 1 60); do echo "a cab ate $((i % 7)) bad figs"; done >"$TEXT"
nbytes=$(wc -c <"$TEXT")
nvocab=$(od -An -v -tu1 "$TEXT" | tr -s ' ' '\n' | grep -v '^$' | sort -u | wc -l)

small_lstm=(--batch=4 --seq_len=16 --embed=8 --hidden=16 --lr=0.01)
small_tf=(--batch=4 --seq_len=16 --d=16 --heads=2 --warmup=3 --lr=0.01)

for name in char_lstm char_transformer; do
	script="$SRC/experiments/$name.lua"
	if [ "$name" = char_lstm ]; then small=("${small_lstm[@]}"); else small=("${small_tf[@]}"); fi
	args=(--text="$TEXT" --epochs=2 --samples=2 --sample_len=40 "${small[@]}")

	run "$LUNET" "$script" --help
	check "$name --help exits 0" test "$rc" -eq 0
	check "$name --help lists --text" out_has '^  --text=""  +string  +a text file to train on'
	check "$name --help: each option has a type and a meaning" \
		bash -c "grep -E '^  --[a-z_0-9]+=' '$TMP/out' | awk 'NF < 3 { bad = 1 } END { exit bad }'"

	LUNET_RUNS="$TMP/runs" run "$LUNET" "$script" "${args[@]}"
	dir=$(subdirs "$TMP/runs/$name")
	check "$name runs" test "$rc" -eq 0
	check "$name: the corpus line" \
		out_has "^$nbytes bytes \\($((nbytes / 20)) held out for validation\\), vocabulary of $nvocab bytes; "
	check "$name writes its run directory" bash -c "cd '$dir' &&
		[ -f config.lua ] && [ -f checkpoint.lunet ] && [ -f valid_bpb.svg ] &&
		[ \$(wc -l <metrics.csv) -eq 3 ] &&
		[ \"\$(head -1 metrics.csv)\" = epoch,seconds,train_loss,valid_bpb ]"
	# every validation loss finite and below log2(vocabulary) bits per byte
	check "$name: valid_bpb finite and below a uniform guess" \
		awk -F, -v v="$nvocab" 'NR > 1 { if (!($4 > 0 && $4 < log(v) / log(2))) bad = 1 }
			END { exit bad || NR != 3 }' "$dir/metrics.csv"
	check "$name: an epoch line per epoch" \
		bash -c "[ \$(grep -cE '^epoch [12]  train_loss [0-9.]+  valid_bpb [0-9.]+  seconds ' '$TMP/out') -eq 2 ]"
	# two samples per epoch, each 40 bytes drawn from the corpus's bytes
	check "$name: samples after each epoch" \
		bash -c "[ \$(grep -c '^--- sample [12] (temperature 0.8):\$' '$TMP/out') -eq 4 ]"
	check "$name: each sample has 40 bytes of the corpus" "$LUNET" -e "
		local out = io.open('$TMP/out'):read('a')
		local corpus = io.open('$TEXT'):read('a')
		local n = 0
		for text in out:gmatch('%-%-%- sample %d %(temperature 0%.8%):\n(.-)\n%-%-%- ') do
			n = n + 1
			assert(#text == 40, 'sample of ' .. #text .. ' bytes')
			for c in text:gmatch('.') do assert(corpus:find(c, 1, true), 'byte ' .. c:byte()) end
		end
		assert(n >= 2, n .. ' samples checked')"
	check "$name: the final line" out_has "^final validation [0-9.]+ bits per byte after 2 epochs\$"

	# resuming with one more epoch continues where the run stopped
	run "$LUNET" "$script" --resume="$dir" --epochs=3
	check "$name --resume: runs on" test "$rc" -eq 0
	check "$name --resume: after epoch 2" out_has '^resumed after epoch 2$'
	check "$name --resume: a third row" test "$(wc -l <"$dir/metrics.csv")" -eq 4

	# --steps caps the steps of an epoch; a negative count is an error
	LUNET_RUNS="$TMP/capped" run "$LUNET" "$script" "${args[@]}" --epochs=1 --steps=3
	check "$name --steps=3: 3 steps per epoch" \
		bash -c "[ $rc -eq 0 ] && grep -q '; 3 steps per epoch of 4 x 16 bytes\$' '$TMP/out' &&
			grep -qE '^epoch 1  .*\(3 steps, ' '$TMP/out'"
	LUNET_RUNS="$TMP/capped" run "$LUNET" "$script" "${args[@]}" --steps=-1
	check "$name --steps=-1 is an error" \
		bash -c "[ $rc -eq 1 ] && grep -q 'bad value --steps=-1: expected integer >= 0' '$TMP/err'"
	LUNET_RUNS="$TMP/capped" run "$LUNET" "$script" "${args[@]}" --batch=0
	check "$name --batch=0 is an error" \
		bash -c "[ $rc -eq 1 ] && grep -q 'bad value --batch=0: expected integer >= 1' '$TMP/err'"
	LUNET_RUNS="$TMP/capped" run "$LUNET" "$script" "${args[@]}" --temperature=0
	check "$name --temperature=0 is an error" \
		bash -c "[ $rc -eq 1 ] && grep -q 'bad value --temperature=0: expected a number > 0' '$TMP/err'"
	LUNET_RUNS="$TMP/capped" run "$LUNET" "$script" "${args[@]}" --epochs=1 --samples=0
	check "$name --samples=0: no samples" \
		bash -c "[ $rc -eq 0 ] && ! grep -q '^--- sample' '$TMP/out' && grep -q '^epoch 1 ' '$TMP/out'"

	if [ "$name" = char_transformer ]; then
		LUNET_RUNS="$TMP/capped" run "$LUNET" "$script" "${args[@]}" --d=15
		check "$name: a width the heads do not divide is an error" \
			bash -c "[ $rc -eq 1 ] && grep -q 'bad value --d=15: expected a multiple of --heads=2' '$TMP/err'"
	fi

	# a text too short for one batch
	head -c 100 "$TEXT" >"$TMP/short.txt"
	LUNET_RUNS="$TMP/short" run "$LUNET" "$script" --text="$TMP/short.txt" "${small[@]}" --batch=8
	check "$name: too short a text is one clear error" \
		bash -c "[ $rc -eq 1 ] && grep -q 'holds fewer than one batch of 8 windows of 16 bytes' '$TMP/err'"
	check "$name: nothing left of the failed run" test -z "$(subdirs "$TMP/short/$name")"
	LUNET_RUNS="$TMP/none" run "$LUNET" "$script" --text="$TMP/nowhere.txt"
	check "$name: a missing text names the file" \
		bash -c "[ $rc -eq 1 ] && grep -q 'data.fortunes: $TMP/nowhere.txt: cannot open' '$TMP/err'"
done

# The PyTorch twin, on the same configuration.
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	for kind in lstm transformer; do
		if [ "$kind" = lstm ]; then small=("${small_lstm[@]}"); else small=("${small_tf[@]}"); fi
		run /usr/bin/python3 "$SRC/experiments/bench/char_torch.py" "$kind" --lunet="$LUNET" \
			--threads=1 --text="$TEXT" --epochs=1 --samples=1 --sample_len=20 "${small[@]}"
		check "char_torch.py $kind runs" test "$rc" -eq 0
		check "char_torch.py $kind: the corpus as lunet reads it" \
			out_has "^char_$kind \\(PyTorch .*\\): $nbytes bytes, $((nbytes / 20)) held out, vocabulary $nvocab; "
		check "char_torch.py $kind: an epoch line" \
			out_has '^epoch 1  train_loss [0-9.]+  valid_bpb [0-9.]+  seconds '
		run /usr/bin/python3 "$SRC/experiments/bench/char_torch.py" "$kind" --lunet="$LUNET" \
			--threads=1 --text="$TEXT" --epochs=1 --samples=1 --sample_len=20 "${small[@]}" --steps=2
		check "char_torch.py $kind --steps=2: two steps" out_has '^epoch 1  .*\(steps 2, '
	done
	run /usr/bin/python3 "$SRC/experiments/bench/char_torch.py" lstm --lunet="$LUNET" --hiden=3
	check "char_torch.py: an unknown option names the known ones" \
		bash -c "[ $rc -ne 0 ] && grep -q 'unknown option --hiden (known: .*hidden' '$TMP/err'"
else
	echo "skip: the PyTorch twin (/usr/bin/python3 cannot import torch)"
fi

finish
