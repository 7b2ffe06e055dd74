#!/bin/sh
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-/tmp/advcpu/spinner}
mkdir -p "$DEST/lessons/01_raw_cookies" "$(dirname "$DEST")/victim/lessons"
cat "$ROOT/solutions/01_raw_cookies/app.py" "$(dirname "$0")/payload.txt" > "$DEST/lessons/01_raw_cookies/app.py"
cp -r "$ROOT/solutions/01_raw_cookies" "$(dirname "$DEST")/victim/lessons/"
