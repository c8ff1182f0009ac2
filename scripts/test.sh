#!/usr/bin/env bash
# Runs SAGATOR's whole test suite: installs the Debian packages it needs (idempotent),
# builds everything with Bazel and runs every test. Prints a closing line
# "tests: N passed, N failed" counted from the test cases themselves.
#
#   scripts/test.sh              # everything
#   scripts/test.sh //common/... # a subset (any Bazel target patterns)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(//...)

set +e
bazel build "${targets[@]}"
build_rc=$?
if [ $build_rc -ne 0 ]; then
  echo "tests: build failed (bazel exit $build_rc)"
  exit $build_rc
fi
bazel test --test_output=errors "${targets[@]}"
rc=$?
set -e

# Count test cases from the JUnit XML files of the test targets just run (not the
# leftovers of targets that no longer exist).
SAGATOR_TESTS="$(bazel query "tests(set(${targets[*]}))" --output=label 2>/dev/null)" \
python3 - <<'PY'
import os, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for label in os.environ.get("SAGATOR_TESTS", "").split():
    f = "bazel-testlogs/" + label.lstrip("/").replace(":", "/") + "/test.xml"
    if not os.path.exists(f):
        failed += 1  # a test that left no result did not pass
        continue
    try:
        root = ET.parse(f).getroot()
    except ET.ParseError:
        failed += 1
        continue
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        for case in s.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None or case.get("result") == "suppressed":
                skipped += 1
            else:
                passed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
PY
exit $rc
