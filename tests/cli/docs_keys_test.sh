#!/usr/bin/env bash
# The docs name only config keys that exist: every `section.key` a Markdown page
# of the source tree names (in backticks or after --set) is one that
# 'lockstep train --help' lists, and --set accepts it with the default --help shows.
source "$(dirname "$0")/lib.sh"
cd "$WORK"

"$LS" train --help >help.txt 2>&1 || bad "lockstep train --help failed: $(head -3 help.txt)"
awk '/^Config keys/ {keys = 1; next} keys && NF {print $1}' help.txt >keys.txt
[ "$(wc -l <keys.txt)" -ge 50 ] && ok "--help lists $(wc -l <keys.txt) config keys" || bad "--help lists too few keys: $(cat keys.txt)"

sections='data|model|optimizer|train|strategy|comm|checkpoint|output'
find "$LOCKSTEP_SOURCE_DIR" -name '*.md' -not -path '*/build*' -not -path '*/datasets/*' -not -path '*/.git/*' |
  xargs grep -ohE "(\`|--set )($sections)\.[a-z_0-9]+(\`|=| )" |
  sed -E 's/^(`|--set )//; s/[`= ]$//' | grep -vE '\.(h5|json|jsonl|yaml|onnx|png)$' | sort -u >named.txt
[ -s named.txt ] || bad "found no config keys in the docs (is LOCKSTEP_SOURCE_DIR right?)"
while read -r key; do
  grep -qxF "$key" keys.txt && ok "the docs' $key is a config key" || bad "the docs name $key, which is no config key"
done <named.txt

# Each key --help lists, set to the default it shows, is accepted (keys whose
# default is a word in parentheses or too wide for the column excepted). The
# config loads before the missing model file is found (exit 3 naming it).
make_tiny_dataset tiny.h5
printf 'data: {path: tiny.h5}\n' >min.yaml
awk '/^Config keys/ {keys = 1; next} keys && NF && $2 !~ /^\(/ {print $1 "=" $2}' help.txt >defaults.txt
sets=()
while read -r kv; do sets+=(--set "$kv"); done <defaults.txt
"$LS" predict min.yaml --checkpoint none.h5 --input tiny.h5 --output p.jsonl "${sets[@]}" >set.log 2>&1
[ $? -eq 3 ] && grep -q "none.h5" set.log && ok "every listed default is accepted by --set ($(wc -l <defaults.txt) keys)" ||
  bad "--set with the listed defaults: $(cat set.log)"
finish
