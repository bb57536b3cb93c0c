#!/usr/bin/env bash
# Julia 1.5.3 for the Julia binding's test, without the internet installers (they download Julia at
# run time): Debian bullseye still packages it. Its .deb files are fetched with a bullseye source list
# kept in a temporary directory (the system's apt configuration is not touched), unpacked with
# `dpkg -x` into a cache folder, and the few libraries they expect from the system are linked in from
# this one (Debian bookworm has them; as root, missing ones are installed).
#
#   export HPSF_JULIA=$(bash scripts/julia-setup.sh | tail -1)    # then "$HPSF_JULIA" runs Julia
#
# The cache: $HPSF_JULIA_DIR, default .cache/julia-1.5.3 in the repository (git-ignored). Prints, as
# its last line, the path of a `julia` launcher that sets the library path for Julia alone (its
# libraries, an older libunwind among them, must not be seen by other programs); exits non-zero
# when Julia cannot be set up.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${HPSF_JULIA_DIR:-$PWD/.cache/julia-1.5.3}")
root=$dir/root
lib=$root/usr/lib/x86_64-linux-gnu

# the system's libraries the packages link to (their links point inside the unpacked tree); not
# libunwind: Julia 1.5 crashes (a silent segfault at its first exception) with bookworm's 1.6, so
# bullseye's 1.3.2 is unpacked with it
system_libs="libpcre2-8.so.0 libssh2.so.1 libgmp.so.10 libcurl-gnutls.so.4 libmpfr.so.6 libgfortran.so.5"
system_pkgs="libpcre2-8-0 libssh2-1 libgmp10 libcurl3-gnutls libmpfr6 libgfortran5"

# (awk reads all of ldconfig's output: an early exit would fail the pipe with SIGPIPE)
found() { "${LDCONFIG:-/sbin/ldconfig}" -p | awk -v n="$1" '$1 == n && !done { print $NF; done = 1 }'; }

# .complete marks an unpacking that went to the end (a broken one is redone)
if [ ! -f "$dir/.complete" ]; then
  missing=""
  for l in $system_libs; do [ -n "$(found "$l")" ] || missing="$missing $l"; done
  if [ -n "$missing" ] && [ "$(id -u)" = 0 ]; then
    echo "julia-setup: installing the system libraries Julia needs ($missing)" >&2
    apt-get install -y -qq $system_pkgs >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq $system_pkgs >/dev/null; }
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # bullseye's LTS ended in 2026: its packages stay on archive.debian.org when the mirrors drop them
  { echo "deb http://deb.debian.org/debian bullseye main"
    echo "deb http://archive.debian.org/debian bullseye main"; } >"$tmp/sources.list"
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  apt=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o Debug::NoLocking=1
       -o APT::Sandbox::User=root)
  echo "julia-setup: fetching Julia 1.5.3 from Debian bullseye into $dir" >&2
  apt-get "${apt[@]}" update -qq >"$tmp/log" 2>&1 || true   # one of the two sources may be gone
  (cd "$tmp" && apt-get "${apt[@]}" download julia julia-common libjulia1 libllvm9 libgit2-1.1 libmbedcrypto3 \
    libmbedtls12 libmbedx509-0 libdsfmt-19937-1 libopenlibm3 libutf8proc2 libhttp-parser2.9 libffi7 \
    libunwind8=1.3.2-2 >>"$tmp/log" 2>&1) || { echo "julia-setup: the download failed:" >&2; cat "$tmp/log" >&2; exit 1; }
  rm -rf "$dir" && mkdir -p "$root"
  for d in "$tmp"/*.deb; do dpkg -x "$d" "$root"; done
  for l in $system_libs; do
    p=$(found "$l")
    [ -n "$p" ] || { echo "julia-setup: $l not found on this system" >&2; exit 1; }
    ln -sf "$p" "$lib/$l"
  done
  touch "$dir/.complete"
fi
launcher=$dir/julia
{
  echo '#!/bin/sh'
  echo '# Julia 1.5.3 unpacked by scripts/julia-setup.sh, its libraries on the path for itself alone'
  echo "LD_LIBRARY_PATH=\"$lib:$lib/julia\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\" exec \"$root/usr/bin/julia\" \"\$@\""
} >"$launcher"
chmod +x "$launcher"
# it runs, with the standard libraries the test uses, and survives an exception
"$launcher" --startup-file=no -e 'using Test, Libdl; @test_throws ErrorException error(); VERSION == v"1.5.3" || exit(1)' >&2 ||
  { echo "julia-setup: the unpacked Julia does not run" >&2; rm -f "$dir/.complete"; exit 1; }
echo "$launcher"
