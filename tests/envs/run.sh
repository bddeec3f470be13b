#!/usr/bin/env bash
# Run the tests of each integration whose library cannot share the main dev environment, each
# folder under tests/envs/ in its own locked environment (uv builds it from its uv.lock).
# After changing pyproject.toml's dependencies: uv lock --project tests/envs/<name>
set -euo pipefail
cd "$(dirname "$0")/../.."
for env in tests/envs/*/; do
  name="$(basename "$env")"
  [ -f "$env/pyproject.toml" ] || continue
  echo "== tests/envs/$name"
  PLYRA_TEST_ENV="$name" uv run --locked --project "$env" pytest "$env" "$@"
done
