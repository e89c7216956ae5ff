# Sourced by scripts/run and scripts/test: make .venv with Python >= 3.11 and install agentd into it.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "agentd needs Python >= 3.11; '$python' is $("$python" --version 2>&1). Set PYTHON=/path/to/python3.11+" >&2
  exit 1
fi
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv" >&2
  "$python" -m venv "$venv"
fi
ensure_installed() {  # $1 = pip extras spec, e.g. "." or ".[test]"; then any pip options
  # Editable install: code changes take effect without reinstalling; quiet unless it fails.
  local spec="$1"; shift
  (cd "$root" && "$venv/bin/python" -m pip install --disable-pip-version-check -q -e "$spec" "$@") >&2
}
