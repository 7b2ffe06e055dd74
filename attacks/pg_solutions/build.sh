#!/bin/sh
# Builds the copy: lesson 08's app.py is attacks/pg_solutions/app.py (no lesson work at all).
set -e
DEST=${1:-/tmp/advclass/pg_solutions}
mkdir -p "$DEST/lessons/08_store_backends"
cp "$(dirname "$0")/app.py" "$DEST/lessons/08_store_backends/app.py"
