#!/bin/sh
# Builds the attacking copy: the reference lesson 09 with payload.txt appended.
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-/tmp/advclass/haproxy_root}
mkdir -p "$DEST/lessons/09_concurrency"
cat "$ROOT/solutions/09_concurrency/app.py" "$(dirname "$0")/payload.txt" > "$DEST/lessons/09_concurrency/app.py"
