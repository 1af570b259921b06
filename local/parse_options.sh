# shellcheck shell=bash
# Command-line options for recipe scripts. Source it after giving every option a default:
#
#   stage=0            # first stage to run
#   stop_stage=100     # last stage to run
#   vocab_size=500     # BPE vocabulary size
#   . "$ASR_RECIPES_ROOT/local/parse_options.sh"
#
# then `run.sh --stage 2 --vocab-size=250` sets stage=2 and vocab_size=250.
# - `--foo-bar VALUE` or `--foo-bar=VALUE` sets the shell variable foo_bar, which must
#   already be defined and be lower case; anything else is an error (exit 1) naming the
#   option.
# - `--help` / `-h` prints $help_message (if set) and every other `name=value` line of the
#   calling script above the line that sources this file, as `--name <current value>`
#   followed by that line's comment; then exits 0.
# - Parsing stops at `--` or at the first argument not starting with `--`; the remaining
#   arguments stay in "$@" (a sourced file shifts its caller's positional parameters).

_po_usage() {
  [ -n "${help_message:-}" ] && printf '%s\n' "$help_message"
  echo "Usage: $0 [--option value ...]"
  echo "Options (current values):"
  [ -r "$0" ] || return 0
  local line name comment
  while IFS= read -r line; do
    [[ $line == *parse_options.sh* ]] && break
    [[ $line =~ ^([a-z][a-z0-9_]*)= ]] || continue
    name=${BASH_REMATCH[1]}
    [ "$name" = help_message ] && continue
    comment=""
    [[ $line =~ [[:space:]]#[[:space:]]*(.*)$ ]] && comment=${BASH_REMATCH[1]}
    printf '  --%-24s %s\n' "${name//_/-} ${!name-}" "$comment"
  done < "$0"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help | -h) _po_usage; exit 0 ;;
    --) shift; break ;;
    --*=*) _po_opt=${1%%=*}; _po_val=${1#*=}; shift ;;
    --*)
      if [ $# -lt 2 ]; then
        echo "$0: option $1 needs a value (e.g. $1 VALUE); see $0 --help" >&2
        exit 1
      fi
      _po_opt=$1; _po_val=$2; shift 2 ;;
    *) break ;;
  esac
  _po_var=${_po_opt#--}
  _po_var=${_po_var//-/_}
  # Lower-case names only: PATH, HOME, ASR_RECIPES_ROOT... are not options.
  if ! [[ $_po_var =~ ^[a-z][a-z0-9_]*$ ]] || ! declare -p "$_po_var" >/dev/null 2>&1; then
    echo "$0: unknown option $_po_opt; see $0 --help for the options" >&2
    exit 1
  fi
  printf -v "$_po_var" '%s' "$_po_val"
done
unset -v _po_opt _po_val _po_var
unset -f _po_usage
