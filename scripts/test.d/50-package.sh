#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Packaging, as a user meets it: `python -m build` makes an sdist and, from it, one wheel
# tagged cp39-abi3; `twine check --strict` passes on both; the wheel installs and imports in a
# fresh venv of the oldest and the newest other CPython 3.9+ found (python3.N on PATH, pyenv's
# versions); and the tests run from the unpacked sdist against the installed wheel, under the
# oldest of them (a quick subset here; the whole suite passes there too: see docs/testing.md).
# IOVA_PACKAGE_SKIP=1 skips this step.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${IOVA_NATIVE_VENV:-$ROOT/.venv}/bin/python
say() { printf 'package: %s\n' "$*"; }
if [ "${IOVA_PACKAGE_SKIP:-}" = 1 ]; then say "SKIP: IOVA_PACKAGE_SKIP=1"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PY" -m build --outdir "$work/dist" "$ROOT" >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2; echo "package: python -m build failed" >&2; exit 1; }
"$PY" -m twine check --strict "$work"/dist/* >"$work/twine.log" 2>&1 || {
    cat "$work/twine.log" >&2; echo "package: twine check failed" >&2; exit 1; }
wheels=("$work"/dist/*.whl)
[ "${#wheels[@]}" = 1 ] || { echo "package: expected one wheel, got ${wheels[*]}" >&2; exit 1; }
wheel=${wheels[0]}
case $(basename "$wheel") in
    *-cp39-abi3-*.whl) ;;
    *) echo "package: the wheel is not tagged cp39-abi3: $(basename "$wheel")" >&2; exit 1 ;;
esac
say "built $(basename "$work"/dist/*.tar.gz) and $(basename "$wheel"); twine check passed"
# The C library ships inside the wheel: headers, shared library, pkg-config file.
for member in iova_native/include/qemu/iova-tree.h iova_native/include/hw/virtio/vhost-iova-tree.h \
    iova_native/lib/libiova-native.so iova_native/lib/pkgconfig/iova-native.pc; do
    "$PY" -c 'import sys, zipfile; sys.exit(sys.argv[2] not in zipfile.ZipFile(sys.argv[1]).namelist())' \
        "$wheel" "$member" || { echo "package: the wheel lacks $member" >&2; exit 1; }
done

# The oldest and the newest CPython 3.9+ other than the one that built the wheel.
own=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pythons=()
found=()
declare -A seen=(["$own"]=1)
candidates=()
for minor in 9 10 11 12 13 14; do candidates+=("python3.$minor"); done
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
command -v pyenv >/dev/null 2>&1 && pyenv_root=$(pyenv root)
for exe in "$pyenv_root"/versions/*/bin/python3; do [ -x "$exe" ] && candidates+=("$exe"); done
for cand in "${candidates[@]}"; do
    exe=$(command -v "$cand" 2>/dev/null) || continue
    ver=$("$exe" -c 'import sys
ok = sys.version_info >= (3, 9) and sys.implementation.name == "cpython"
print("%d.%d" % sys.version_info[:2] if ok else "")' 2>/dev/null) || continue
    [ -n "$ver" ] && [ -z "${seen[$ver]:-}" ] || continue
    "$exe" -c 'import venv, ensurepip' 2>/dev/null || continue
    seen[$ver]=1
    found+=("$ver $exe")
done
if [ "${#found[@]}" -gt 0 ]; then
    mapfile -t found < <(printf '%s\n' "${found[@]}" | sort -V)
    pythons=("${found[0]#* }")
    [ "${#found[@]}" -lt 2 ] || pythons+=("${found[-1]#* }")
fi

mkdir "$work/sdist"
tar xzf "$work"/dist/*.tar.gz -C "$work/sdist" --strip-components=1
status=0
for exe in "${pythons[@]}"; do
    ver=$("$exe" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    venv=$work/venv-$ver
    "$exe" -m venv "$venv"
    # The oldest also gets the testing extra: the sdist's tests run there.
    extra=""
    [ "$exe" != "${pythons[0]}" ] || extra="[testing]"
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel$extra" \
        >"$work/install-$ver.log" 2>&1; then
        cat "$work/install-$ver.log" >&2; say "Python $ver: the wheel does not install"
        status=1; continue
    fi
    if ! "$venv/bin/python" -c 'import iova_native._core, iova_native
from iova_native import DMAMap, IOVATree
t = IOVATree(); t.insert(DMAMap(0x1000, 0x7F0000000000, 0xFFF))
assert t.find_iova(0x7F0000000800).iova == 0x1000'; then
        say "Python $ver: the installed wheel does not import"; status=1; continue
    fi
    say "Python $ver: the wheel installs and imports"
done
[ "${#pythons[@]}" -gt 0 ] || say "no other CPython 3.9+ found: the wheel was checked under $own only"

# The tests from the unpacked sdist, against the wheel installed in a fresh venv of the oldest
# Python found (3.9 where there is one: what CI otherwise never runs), with the testing extra.
# The bad-input tests are among them: conversions differ between Python versions.
if [ "${#pythons[@]}" -gt 0 ]; then
    ver=$("${pythons[0]}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    venv=$work/venv-$ver
else
    ver=$own
    venv=$work/venv-own
    "$("$PY" -c 'import sys; print(sys._base_executable)')" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel[testing]" \
        >"$work/install-own.log" 2>&1 || { cat "$work/install-own.log" >&2; exit 1; }
fi
(cd "$work/sdist" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -x \
    tests/test_docs.py tests/test_examples.py tests/test_build.py tests/test_deviations.py \
    tests/test_bad_input.py tests/test_c_library.py tests/test_binding_conversions.py \
    tests/test_regressions.py >"$work/pytest.log" 2>&1) || {
    cat "$work/pytest.log" >&2; echo "package: pytest from the unpacked sdist failed" >&2; exit 1; }
say "pytest from the unpacked sdist, Python $ver, against the wheel: $(tail -n 1 "$work/pytest.log")"
exit "$status"
