#!/bin/sh
# Builds the attacker: reference lesson 08 + payload (its own marks do not matter; it keeps lesson 08 busy).
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-/tmp/advclass/net_attacker}
mkdir -p "$DEST/lessons/08_store_backends"
cat "$ROOT/solutions/08_store_backends/app.py" "$(dirname "$0")/payload.txt" > "$DEST/lessons/08_store_backends/app.py"
