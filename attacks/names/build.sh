#!/bin/bash
# Copies whose folder names hold a newline, markdown/CSV syntax, unicode, a leading dash, and a
# name that another copy's name collides with after renaming (x and x-2).
set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
C=${1:-/tmp/advnames}
rm -rf "$C"; mkdir -p "$C"
for name in $'evil\nname' 'pipe|in|table' 'ünïcødé' '-rf' 'x-2' '=HYPERLINK("http://evil.test")' '<script>alert(1)</script>'; do
  mkdir -p "$C/$name/lessons"; cp -r "$ROOT/solutions/01_raw_cookies" "$C/$name/lessons/"
done
mkdir -p "$C/dup1/x/lessons" "$C/dup2/x/lessons"
cp -r "$ROOT/solutions/01_raw_cookies" "$C/dup1/x/lessons/"; cp -r "$ROOT/lessons/01_raw_cookies" "$C/dup2/x/lessons/"
