# shellcheck shell=bash
# Shared helpers for egs/<corpus>/run.sh. A recipe starts like:
#
#   #!/usr/bin/env bash
#   set -euo pipefail
#   . "$(dirname "$0")/../../local/common.sh"     # sets ASR_RECIPES_ROOT, defines helpers
#   stage=0          # first stage to run
#   stop_stage=100   # last stage to run
#   . "$ASR_RECIPES_ROOT/local/parse_options.sh"
#
#   if should_run 1 data/fbank; then
#     log "Stage 1: compute fbank"
#     python -m asr_recipes.bin.fbank ...
#     mark_done data/fbank 1
#   fi
#
# Functions (all safe under `set -euo pipefail`):
#   log MSG...          "YYYY-mm-dd HH:MM:SS (script:line) MSG" on stderr
#   die MSG...          log "ERROR: MSG" and exit 1
#   stage_enabled N     true when $stage <= N <= $stop_stage (integers, else die)
#   stage_done DIR N    true when DIR holds stage N's done-marker (DIR/.done/stage-N)
#   mark_done DIR N     write that marker (atomically; it holds the date and script)
#   should_run N DIR    stage_enabled N and not stage_done DIR N; logs why a done stage is
#                       skipped and how to redo it
# N may also be a name (e.g. "fbank") for stage_done / mark_done.

ASR_RECIPES_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ASR_RECIPES_ROOT

# Prints MSG attributed to the innermost caller outside this file (the recipe line).
_log() {
  local i=1
  while [ "$i" -lt $((${#BASH_SOURCE[@]} - 1)) ] && [ "${BASH_SOURCE[$i]}" = "${BASH_SOURCE[0]}" ]; do
    i=$((i + 1))
  done
  printf '%s (%s:%s) %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" \
    "${BASH_SOURCE[$i]##*/}" "${BASH_LINENO[$((i - 1))]}" "$*" >&2
}

log() { _log "$@"; }

die() {
  _log "ERROR: $*"
  exit 1
}

_require_int() {
  [[ ${!1-} =~ ^-?[0-9]+$ ]] ||
    die "\$$1 must be an integer, got '${!1-}' (set it in the recipe or pass --${1//_/-} N)"
}

stage_enabled() {
  [[ ${1-} =~ ^-?[0-9]+$ ]] || die "stage_enabled needs a stage number, got '${1-}'"
  _require_int stage
  _require_int stop_stage
  [ "$stage" -le "$1" ] && [ "$1" -le "$stop_stage" ]
}

_marker() {
  [ $# -eq 2 ] && [ -n "$1" ] && [[ $2 =~ ^[A-Za-z0-9_.-]+$ ]] ||
    die "usage: stage_done|mark_done DIR STAGE (got: $*)"
  echo "$1/.done/stage-$2"
}

stage_done() {
  local marker
  marker=$(_marker "$@") || exit 1
  [ -f "$marker" ]
}

mark_done() {
  local marker tmp
  marker=$(_marker "$@") || exit 1
  mkdir -p "$(dirname "$marker")"
  tmp=$(mktemp "$marker.XXXXXX")
  chmod 644 "$tmp"
  printf '%s %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$0" > "$tmp"
  mv -f "$tmp" "$marker"
}

should_run() {
  [ $# -eq 2 ] || die "usage: should_run STAGE DIR"
  stage_enabled "$1" || return 1
  if stage_done "$2" "$1"; then
    _log "Stage $1 already done ($2/.done/stage-$1 exists; delete it to redo), skipping"
    return 1
  fi
}
