# Sourced by the shell tests of the tools, after they set 'tool' to the
# program under test.  Gives them 'tmp', a directory removed at exit, the
# failure count 'fails', and:
#
#   expect STATUS WORD -- ARGS
#
# which runs the tool with ARGS and counts a failure unless it exits with
# STATUS and prints WORD (on stderr for failures, on stdout for status 0).
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0

expect() {
    want=$1 word=$2
    shift 3
    "$tool" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    where="$tmp/err"
    [ "$want" = 0 ] && where="$tmp/out"
    if [ "$got" != "$want" ] || ! grep -q -- "$word" "$where"; then
        echo "FAIL: $tool $*: status $got (want $want), looking for '$word'"
        cat "$tmp/out" "$tmp/err"
        fails=$((fails + 1))
    fi
}
