#!/usr/bin/env bash
# Installs the system tools the synthesized-speech corpus needs (espeak-ng, flite, sox)
# when they are missing. Only acts when running as root with apt-get available;
# otherwise prints the command to run and carries on (tests that need the tools
# will then fail with that same advice).
set -u
missing=()
for tool in espeak-ng flite sox; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${missing[*]} with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "WARNING: ${missing[*]} not found. Install with: sudo apt-get install espeak-ng flite sox" >&2
fi
exit 0
