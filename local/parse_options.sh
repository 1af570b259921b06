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
#   followed by that line's comment; then the same for the files listed in OPTION_FILES
#   (shared options, e.g. local/recipe_options.sh), where a name the script defines again
#   takes the script's comment if it has one; then exits 0.
# - Parsing stops at `--` or at the first argument not starting with `--`; the remaining
#   arguments stay in "$@" (a sourced file shifts its caller's positional parameters).

# "name<TAB>comment" for each `name=value  # comment` line of FILE above the line that sources
# this file (for a file that does not source it: all of them).
_po_options_of() {
  local line name comment
  [ -r "$1" ] || return 0
  while IFS= read -r line; do
    [[ $line =~ ^[[:space:]]*(\.|source)[[:space:]].*parse_options\.sh ]] && break
    [[ $line =~ ^([a-z][a-z0-9_]*)= ]] || continue
    name=${BASH_REMATCH[1]}
    [ "$name" = help_message ] && continue
    comment=""
    [[ $line =~ [[:space:]]#[[:space:]]*(.*)$ ]] && comment=${BASH_REMATCH[1]}
    printf '%s\t%s\n' "$name" "$comment"
  done < "$1"
}

_po_print() {  # NAME COMMENT
  printf '  --%-24s %s\n' "${1//_/-} ${!1-}" "$2"
}

_po_usage() {
  [ -n "${help_message:-}" ] && printf '%s\n' "$help_message"
  echo "Usage: $0 [--option value ...]"
  local name comment file
  local -a own=() shared=()
  local -A own_comment=() shared_comment=()
  while IFS=$'\t' read -r name comment; do
    own+=("$name"); own_comment[$name]=$comment
  done < <(_po_options_of "$0")
  for file in "${OPTION_FILES[@]}"; do
    while IFS=$'\t' read -r name comment; do
      [ -n "${shared_comment[$name]+set}" ] || shared+=("$name")
      shared_comment[$name]=$comment
    done < <(_po_options_of "$file")
  done
  if [ ${#shared[@]} -eq 0 ]; then
    echo "Options (current values):"
  else
    echo "Options of this script (current values):"
  fi
  for name in "${own[@]}"; do
    [ -n "${shared_comment[$name]+set}" ] || _po_print "$name" "${own_comment[$name]}"
  done
  [ ${#shared[@]} -eq 0 ] && return 0
  echo "Options of every recipe (local/recipe_options.sh; current values):"
  for name in "${shared[@]}"; do
    comment=${shared_comment[$name]}
    [ -n "${own_comment[$name]+set}" ] && [ -n "${own_comment[$name]}" ] && comment=${own_comment[$name]}
    _po_print "$name" "$comment"
  done
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
unset -f _po_usage _po_options_of _po_print
