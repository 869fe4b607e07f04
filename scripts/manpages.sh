#!/bin/sh
# make man: hellod.8 and hello.1 into $SCRATCH/man, from the built binaries' own argument
# definitions, so the options never drift from --help.
#
# swift-argument-parser's generate-manual tool (the one its GenerateManual plugin runs)
# writes NAME, SYNOPSIS and DESCRIPTION (the options) from `<binary> --experimental-dump-help`;
# it is built from the checkout SwiftPM resolved for hellod (the same version it links), and
# run on each binary with its own section (the plugin would give both one section, and
# rebuild the package without --static-swift-stdlib first). Its EXIT STATUS (".Ex -std")
# and everything after are replaced by the hand-written sections in man/<page>.tail.
# A blank line in the generated text (an option's or a subcommand's discussion in two
# paragraphs) becomes .Pp: groff warns on each blank input line in mdoc ("mdoc warning:
# Empty input line", lintian's groff-message), mandoc -Tlint too.
# With mandoc installed (scripts/deps.sh test), any lint error fails the build.
set -eu
scratch=${1:-.build-static}
out="$scratch/man"
parser="$scratch/checkouts/swift-argument-parser"
tool_scratch="$scratch/generate-manual"

[ -d "$parser" ] || { echo "manpages.sh: no $parser: run make build first" >&2; exit 1; }
swift build --package-path "$parser" --scratch-path "$tool_scratch" --product generate-manual >&2
tool="$tool_scratch/debug/generate-manual"

# The page's date: the last commit's, so that the same source gives the same page.
date=$(git log -1 --format=%cs 2>/dev/null || date -u +%F)
mkdir -p "$out/generated"
for page in hellod.8 hello.1; do
    name=${page%.*}
    section=${page#*.}
    "$tool" "$scratch/release/$name" --section "$section" --date "$date" --output-directory "$out/generated"
    # hellod has no subcommand but the implicit "help": no "subcommand" in its synopsis.
    awk -v drop_subcommand="$([ "$name" = hellod ] && echo 1)" '
        /^\.Sh "?EXIT STATUS"?$/ { exit }
        drop_subcommand && /^\.Ar subcommand$/ { next }
        /^$/ { print ".Pp"; next }
        { print }' "$out/generated/$page" > "$out/$page.tmp"
    cat "man/$page.tail" >> "$out/$page.tmp"
    if command -v mandoc >/dev/null; then
        mandoc -Tlint -Werror "$out/$page.tmp" || { echo "manpages.sh: mandoc -Tlint: errors in $page" >&2; exit 1; }
    fi
    mv "$out/$page.tmp" "$out/$page"
done
echo "manual pages in $out: hellod.8 hello.1" >&2
