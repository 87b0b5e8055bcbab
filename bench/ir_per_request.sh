#!/bin/sh
# Instructions per proxied HTTP/1.1 keep-alive GET through the gate (compiled unless INFRACORE_PURE=1), in
# process (`bench_gate.micro`, access log to a null sink): callgrind `Ir` for N=11 000 minus N=1 000,
# divided by 10 000 — start-up and warm-up cancel out. Repeatable whatever the machine's load.
#   usage: bench/ir_per_request.sh [TREE]   (TREE: a checkout with its own compiled build; default .)
set -eu
tree=$(cd "${1:-.}" && pwd)
py=${PYTHON:-$(pwd)/.venv/bin/python}
out=$(mktemp -d)
for n in 1000 11000; do
    (cd "$tree" && PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$n" "$py" -c \
        "import sys; sys.path.insert(0, 'bench'); import gate, bench_gate; assert gate.__file__.startswith('$tree'), gate.__file__; print(bench_gate.gate_build()); bench_gate.micro(requests=$n, rounds=1, access_log=True)" \
        >"$out/log.$n" 2>&1)
done
a=$(grep -m1 '^summary:' "$out/cg.1000" | awk '{print $2}')
b=$(grep -m1 '^summary:' "$out/cg.11000" | awk '{print $2}')
grep -m1 -E '^(compiled|pure)' "$out/log.1000"
echo "Ir N=1000: $a  N=11000: $b  per request: $(( (b - a) / 10000 ))"
rm -rf "$out"
