#!/bin/sh
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${1:-/tmp/advclass6/root_journal}
mkdir -p "$DEST/lessons/06_login_logout"
cat "$ROOT/solutions/06_login_logout/app.py" "$(dirname "$0")/payload.txt" > "$DEST/lessons/06_login_logout/app.py"
