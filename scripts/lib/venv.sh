# Source me: creates or reuses .venv at the repository root and installs the project into it.
# Reinstalls only when pyproject.toml (or the constraints) changed since the last install.
# Usage: ensure_venv EXTRAS   e.g. ensure_venv "device,server,dev"
ensure_venv() {
  local extras=$1 root stamp want
  root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd))
  if [ ! -x "$root/.venv/bin/python" ]; then
    echo "==> creating $root/.venv" >&2
    python3 -m venv "$root/.venv"
  fi
  stamp="$root/.venv/.tinymlops-installed"
  want="$extras $(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
    echo "==> installing tinymlops[$extras] into .venv" >&2
    "$root/.venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$root/.venv/bin/python" -m pip install --quiet -e "$root[$extras]" >&2
    echo "$want" >>"$stamp"
  fi
  export PATH="$root/.venv/bin:$PATH"
}
