# SPDX-License-Identifier: GPL-2.0-or-later
# Sourced by run.sh and test.sh: installs what a fresh Debian machine lacks, then this package
# into a venv.  Sets VENV and PY.  Safe to run again: each step is skipped when already done.
# IOVA_NATIVE_EXTRAS names the extras to install with it: run.sh asks for what the main job
# needs (replay), test.sh for everything; the default is everything.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VENV=${IOVA_NATIVE_VENV:-$ROOT/.venv}
PY=$VENV/bin/python
EXTRAS=${IOVA_NATIVE_EXTRAS:-testing,replay,bench,fuzz,packaging,docs}

_say() { printf 'iova-native setup: %s\n' "$*" >&2; }

# The package needs Python 3.9 or later; an older python3 would get its venv and GLib's
# headers first, then a page of pip's resolver errors.
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    _say "Python 3.9 or later is needed; python3 is" \
        "$(python3 -V 2>&1 || echo missing) (put a later one first on PATH as python3)"
    return 1 2>/dev/null || exit 1
fi

_apt_missing=()
command -v pkg-config >/dev/null 2>&1 || _apt_missing+=(pkg-config)
pkg-config --exists glib-2.0 2>/dev/null || _apt_missing+=(libglib2.0-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || _apt_missing+=(python3-venv)
python3 - >/dev/null 2>&1 <<'PYEOF' || _apt_missing+=(python3-dev)
import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
PYEOF
if ((${#_apt_missing[@]})); then
    _sudo=""
    [ "$(id -u)" -eq 0 ] || _sudo=sudo
    # Without apt-get (or, not root, without sudo) one line says what to install by hand.
    if ! command -v apt-get >/dev/null 2>&1 ||
        { [ -n "$_sudo" ] && ! command -v sudo >/dev/null 2>&1; }; then
        _say "missing: ${_apt_missing[*]} (Debian's names; GLib 2.68 or later); without" \
            "apt-get${_sudo:+ and sudo} they cannot be installed from here: install them," \
            "then run this again"
        return 1 2>/dev/null || exit 1
    fi
    _say "installing ${_apt_missing[*]} with apt-get"
    $_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -qq "${_apt_missing[@]}" >/dev/null
fi

if [ ! -x "$PY" ]; then
    _say "creating the venv $VENV"
    python3 -m venv "$VENV"
fi

# Reinstall only when the build inputs changed since the last install, or an extra is asked
# for that is not installed yet (the extras installed before are kept: run.sh after test.sh
# does not reinstall).
_stamp=$VENV/.iova-native-build
_inputs=$(bash "$ROOT/scripts/build-inputs.sh" "$ROOT"/src/iova_native/_build.py \
    "$ROOT"/src/iova_native/_build_clib.py | cksum)
_installed=$(sed -n 2p "$_stamp" 2>/dev/null || true)
_wanted=$(printf '%s\n' "${EXTRAS//,/$'\n'}" ${_installed//,/ } | sort -u | paste -sd, -)
if [ "$(sed -n 1p "$_stamp" 2>/dev/null)" != "$_inputs" ] || [ "$_wanted" != "$_installed" ] ||
    ! "$PY" -c 'import iova_native._core' 2>/dev/null; then
    _say "installing iova-native[$_wanted] into $VENV"
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel cffi
    "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation \
        -e "$ROOT[$_wanted]"
    printf '%s\n%s\n' "$_inputs" "$_wanted" >"$_stamp"
fi
