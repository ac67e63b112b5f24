#!/bin/sh
# Seeds the sip_parse corpus with the RFC 4475 / RFC 5118 torture messages
# (the same files the gateway's tests read). Safe to re-run.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
corpus="$here/corpus/sip_parse"
mkdir -p "$corpus"
for f in "$here"/../gateway/tests/data/rfc4475/*.dat "$here"/../gateway/tests/data/rfc5118/*.dat; do
    cp "$f" "$corpus/$(basename "$(dirname "$f")")-$(basename "$f")"
done
echo "$(ls "$corpus" | wc -l) files in $corpus"
