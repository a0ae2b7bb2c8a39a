#!/bin/sh
# Installs the system programs the tests and the demo talk to (real peers, not mocks).
# Runs apt-get only when something is missing, so a second `make test` is quick.
set -eu
PKGS="sip-tester age espeak-ng sox libsndfile1 libspandsp2 chromium baresip"
missing=""
command -v sipp >/dev/null 2>&1 || missing="$missing sip-tester"
command -v age >/dev/null 2>&1 || missing="$missing age"
command -v espeak-ng >/dev/null 2>&1 || missing="$missing espeak-ng"
command -v sox >/dev/null 2>&1 || missing="$missing sox"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v baresip >/dev/null 2>&1 || missing="$missing baresip"
ldconfig -p 2>/dev/null | grep -q libspandsp || missing="$missing libspandsp2"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing system packages:$missing" >&2
    echo "install them with: sudo apt-get install -y $PKGS" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $PKGS >/dev/null
