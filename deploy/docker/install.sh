#!/bin/sh
# Install Segue from the wheels in WHEELS alone (no index) into a fresh virtualenv at VENV
# (the image's runtime stage; tests run it the same way).
#   deploy/docker/install.sh WHEELS VENV
set -eu
python -m venv "$2"
"$2/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
    --find-links "$1" segue
"$2/bin/segue" --help > /dev/null
echo "segue installed in $2"
