#!/bin/sh
# Makes sure the nginx binary the "Beside BookLogr" proxy config is written for is installed:
# Debian's nginx-light (or nginx where that package no longer exists). Used by the proxy test
# (tests/integration/test_booklogr_proxy.py) and by anyone running the proxy as a plain process.
# Exit 0 when nginx is there (prints its path), 3 when it is missing and cannot be installed here.
set -eu

found() {
    for candidate in "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if found; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "nginx is not installed; installing it needs root and apt-get (Debian/Ubuntu):" \
        "apt-get install nginx-light" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
# RUNLEVEL=1: the package's install script must not start an nginx service on port 80.
export RUNLEVEL=1
apt-get update -qq >&2
for package in nginx-light nginx; do
    if apt-get install -y -qq --no-install-recommends "$package" >&2; then
        found
        exit 0
    fi
done
echo "could not install nginx with apt-get" >&2
exit 3
