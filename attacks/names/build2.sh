#!/bin/bash
# Name collision: two sections each hold a "bob" (both solved); a third student names her folder
# "bob-2" (starter: 0 points). The grader renames the second bob to "bob-2". Also CSV formulas.
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
C=${1:-/tmp/advnames2}
rm -rf "$C"; mkdir -p "$C/secA/bob/lessons" "$C/secB/bob/lessons" "$C/secB/bob-2/lessons" "$C/secB/=1+2/lessons"
cp -r "$ROOT/solutions/01_raw_cookies" "$C/secA/bob/lessons/"
cp -r "$ROOT/solutions/01_raw_cookies" "$C/secB/bob/lessons/"
printf '# my work\n' | cat "$ROOT/lessons/01_raw_cookies/app.py" - > /dev/null
mkdir -p "$C/secB/bob-2/lessons/01_raw_cookies"; (cat "$ROOT/lessons/01_raw_cookies/app.py"; echo "# changed") > "$C/secB/bob-2/lessons/01_raw_cookies/app.py"
cp -r "$ROOT/solutions/01_raw_cookies" "$C/secB/=1+2/lessons/"
