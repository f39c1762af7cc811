#!/usr/bin/env bash
# Runs examples/django on Django 6 (its built-in django.tasks) with Python 3.12, in a virtual
# environment of its own (.venv/django6) holding the client, the server and Django>=6 from PyPI.
# The main environment (.venv, Python 3.11) runs the same tests on Django 5.2 with the backport.
#
# Python 3.12 is looked for in $PYTHON312, then on PATH, then through pyenv, then in pyenv's
# versions folder. Without it the run is skipped with a message, except under CI=true, where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv/django6  # inside .venv: ignored by git, docker and ruff, removed by make clean

works() { [ -n "$1" ] && "$1" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; }

find_python312() {
  # A pyenv shim on PATH runs only when its version is selected, so every candidate is tried.
  local root="${PYENV_ROOT:-$HOME/.pyenv}" candidate version
  local candidates=("${PYTHON312:-}" "$(command -v python3.12 || true)")
  if command -v pyenv >/dev/null 2>&1; then
    version="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | sort -V | tail -n 1 || true)"
    [ -n "$version" ] && candidates+=("$(PYENV_VERSION="$version" pyenv which python3.12 2>/dev/null || true)")
  fi
  candidates+=($(ls -d "$root"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V -r || true))
  for candidate in "${candidates[@]}"; do
    if works "$candidate"; then echo "$candidate"; return; fi
  done
}

PY312="$(find_python312)"
if [ -z "$PY312" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "test_django6: python3.12 not found (set PYTHON312, put it on PATH or install it with pyenv)" >&2
    exit 1
  fi
  echo "test_django6: python3.12 not found; skipping examples/django on Django 6 (CI=true makes this fail)" >&2
  exit 0
fi

stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ clients/python/pyproject.toml -nt "$stamp" ] \
   || [ "$0" -nt "$stamp" ]; then
  rm -rf "$VENV"
  "$PY312" -m venv "$VENV"
  if ! { "$VENV/bin/pip" install -q --upgrade pip &&
         "$VENV/bin/pip" install -q -e "clients/python[otel]" -e . "django>=6" "pytest>=8" "pytest-timeout>=2.3"
       } >"$VENV/install.log" 2>&1; then
    cat "$VENV/install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi

"$VENV/bin/python" - <<'PY'
import sys
import django
import django.tasks  # noqa: F401  (built in from Django 6 on: the backport must not be what runs)
assert django.VERSION >= (6,), django.get_version()
print(f"examples/django on Django {django.get_version()}, Python {sys.version.split()[0]}, django.tasks built in")
PY
exec "$VENV/bin/python" -m pytest examples/django -q "$@"
