#!/usr/bin/env bash
# Refreshes the vendored web assets of the console from their npm
# packages: htmx (BSD Zero Clause) and Pico CSS (MIT), each with its
# licence file. `make vendor-web` runs it; set HTMX_VERSION or
# PICO_VERSION to move to another release, then run the console tests.
set -euo pipefail
HTMX_VERSION="${HTMX_VERSION:-2.0.11}"
PICO_VERSION="${PICO_VERSION:-2.1.1}"
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/static/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
command -v npm >/dev/null || { echo "vendor.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
cd "$tmp"
npm pack --silent "htmx.org@$HTMX_VERSION" "@picocss/pico@$PICO_VERSION" >/dev/null
mkdir htmx pico
tar xzf htmx.org-"$HTMX_VERSION".tgz -C htmx
tar xzf picocss-pico-"$PICO_VERSION".tgz -C pico
mkdir -p "$dest/htmx" "$dest/pico"
cp htmx/package/dist/htmx.min.js htmx/package/LICENSE "$dest/htmx/"
cp pico/package/css/pico.min.css pico/package/LICENSE.md "$dest/pico/"
printf 'htmx.org %s\n' "$HTMX_VERSION" >"$dest/htmx/VERSION"
printf '@picocss/pico %s\n' "$PICO_VERSION" >"$dest/pico/VERSION"
echo "vendored htmx $HTMX_VERSION and Pico CSS $PICO_VERSION into $dest"
