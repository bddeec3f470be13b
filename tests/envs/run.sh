#!/usr/bin/env bash
# Run the tests of each integration whose library cannot share the main dev environment, each
# folder under tests/envs/ in its own locked environment (uv builds it from its uv.lock).
# After changing pyproject.toml's dependencies: uv lock --project tests/envs/<name>
# A lock left stale by such a change is said loudly and resolved again, rather than failing CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
for env in tests/envs/*/; do
  name="$(basename "$env")"
  [ -f "$env/pyproject.toml" ] || continue
  echo "== tests/envs/$name"
  lock=(--locked)
  if ! uv lock --check --project "$env" >/dev/null 2>&1; then
    echo "warning: $env/uv.lock is out of date with pyproject.toml; resolving again" \
      "(fix: uv lock --project $env)" >&2
    lock=()
  fi
  PLYRA_TEST_ENV="$name" uv run "${lock[@]}" --project "$env" pytest "$env" "$@"
done
