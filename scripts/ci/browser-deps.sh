#!/usr/bin/env bash
# Installs what the browser test (crates/cli/tests/browser.rs) needs: Debian's Chromium and
# the pinned npm dependencies of web/e2e (playwright-core only; it downloads no browser).
# Idempotent; run as root from anywhere in the clone. Called by .ci/run before the tests.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm  # playwright-core wants node >= 20
fi

# Nothing to do when the installed playwright-core is the locked one.
cd web/e2e
locked=$(node -p "require('./package-lock.json').packages['node_modules/playwright-core'].version")
installed=$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$locked" != "$installed" ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
echo "browser deps: $(chromium --version 2>/dev/null | head -1); node $(node --version); playwright-core $(node -p "require('./node_modules/playwright-core/package.json').version")"
