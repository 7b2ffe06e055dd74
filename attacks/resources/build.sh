#!/bin/sh
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-/tmp/advclass/resources}
mkdir -p "$DEST/lessons/01_raw_cookies"
cat "$ROOT/solutions/01_raw_cookies/app.py" "$(dirname "$0")/payload.txt" > "$DEST/lessons/01_raw_cookies/app.py"
