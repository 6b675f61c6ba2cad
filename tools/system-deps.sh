#!/usr/bin/env bash
# Debian packages the tests use for real, and fail without: redis-server (the shared-state tests
# start one on a loopback port) and chromium (the HTML report is rendered by a real browser).
# Installs only what is missing; as root, or through sudo.
set -euo pipefail
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "the tests need:$missing (install them with your package manager)" >&2
    exit 1
fi
as_root=""
[ "$(id -u)" -eq 0 ] || as_root="sudo"
echo "installing Debian packages the tests need:$missing" >&2
$as_root apt-get update -q
$as_root apt-get install -y -q $missing
