#!/bin/bash
# test_torch_roundtrip.sh BUILD_DIR SOURCE_DIR -- weights move between
# PyTorch and lunet through safetensors files and give the same outputs:
# an MLP, the Fashion-MNIST CNN with BatchNorm, a 2-layer LSTM, a 2-layer
# GRU and causal multi-head self-attention (with LayerNorm and GELU),
# trained a few steps in PyTorch, loaded into lunet (and the other way
# round), compared on the same inputs to 1e-5 (tests/torch/roundtrip.py
# and roundtrip.lua).  The largest differences are printed.  The checks
# come from lib.sh.
#
# Needs /usr/bin/python3 with torch and numpy (Debian's python3-torch);
# without them the test is skipped (exit 77, CTest's SKIP_RETURN_CODE).
set -u

BUILD=$(cd "${1:?usage: test_torch_roundtrip.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: test_torch_roundtrip.sh BUILD_DIR SOURCE_DIR}" && pwd)
PY=/usr/bin/python3

if ! why=$("$PY" -c 'import numpy, torch' 2>&1); then
	echo "SKIP: $PY cannot import torch and numpy (install python3-torch): ${why##*$'\n'}"
	exit 77
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$SRC/tests/sh/lib.sh"

run "$PY" "$SRC/tests/torch/roundtrip.py" torch "$TMP"
check "PyTorch trains the models and writes their state_dicts" [ "$rc" -eq 0 ]
cat "$TMP/out"
run "$BUILD/lunet" "$SRC/tests/torch/roundtrip.lua" "$TMP"
check "lunet loads them with the same outputs, and writes its own" [ "$rc" -eq 0 ]
cat "$TMP/out"
run "$PY" "$SRC/tests/torch/roundtrip.py" check "$TMP"
check "PyTorch loads lunet's with the same outputs" [ "$rc" -eq 0 ]
cat "$TMP/out"

finish
