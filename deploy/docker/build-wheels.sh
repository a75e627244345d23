#!/bin/sh
# Build Segue's wheel and a wheel of every dependency into OUT (the image's build stage; run
# by hand or by tests/integration/test_image_steps.py the same way). SRC may be read-only:
# what the build writes (build/, *.egg-info) goes to a scratch copy, never into SRC.
#   deploy/docker/build-wheels.sh SRC OUT
set -eu
src=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
for part in pyproject.toml README.md setup.py native-modules.txt segue flows operators models state benchmarks; do
    cp -R "$src/$part" "$work/src/"
done
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
find "$work/src" -name '*.so' -delete  # a development tree's in-place build: compiled afresh
chmod -R u+w "$work/src"
python -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$out" "$work/src"
echo "wheels in $out: $(ls "$out" | wc -l)"
