#!/usr/bin/env bash
# Builds the integration test TARGET (tests/TARGET.rs or tests/TARGET/) in release without running it
# and prints the path of its executable; the other arguments go to cargo (features …). Cargo's
# progress and any build error go to stderr; nothing is printed when no executable was built.
#
#   exe=$(bash scripts/test-binary.sh suite --features cuda)
set -euo pipefail
target=$1
shift
cargo test --release "$@" --test "$target" --no-run --message-format=json |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$target" | tail -1
