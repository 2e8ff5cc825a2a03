#!/usr/bin/env bash
# Debian's mecab-ipadic (the IPADIC sources: *.csv in EUC-JP, matrix.def, char.def,
# unk.def) for the tests of the embedded index's Japanese word analysis.
#   scripts/test-peers/ipadic.sh install   installs the package with apt-get when the
#                                          sources are missing and prints
#                                          `export TSUNAGU_TEST_IPADIC_DIR=...`
# Use: eval "$(scripts/test-peers/ipadic.sh install)"
# Without the variable those tests say "skipped"; the dictionary-less analysis is tested
# either way.
set -euo pipefail
DIR=/usr/share/mecab/dic/ipadic

install() {
  if [ ! -f "$DIR/matrix.def" ]; then
    echo "installing mecab-ipadic" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mecab-ipadic >&2
  fi
  if [ ! -f "$DIR/matrix.def" ]; then
    echo "mecab-ipadic is installed but $DIR/matrix.def is missing" >&2
    exit 1
  fi
  echo "export TSUNAGU_TEST_IPADIC_DIR=$DIR"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
