#!/usr/bin/env bash
# openapi-spec-validator (PyPI) for the test that validates `/openapi.json`.
#   scripts/test-peers/openapi-validator.sh install   installs it into .tmp/openapi-venv if
#                                                    missing and prints
#                                                    `export TSUNAGU_OPENAPI_VALIDATOR=...`
# Use: eval "$(scripts/test-peers/openapi-validator.sh install)"
# Without the variable the test says "skipped".
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="$PWD/.tmp/openapi-venv"

install() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2 && python3 -m venv "$VENV" >&2; }
  fi
  if [ ! -x "$VENV/bin/openapi-spec-validator" ]; then
    echo "installing openapi-spec-validator into $VENV" >&2
    "$VENV/bin/pip" install -q 'openapi-spec-validator==0.7.2' >&2
  fi
  echo "export TSUNAGU_OPENAPI_VALIDATOR=$VENV/bin/openapi-spec-validator"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
