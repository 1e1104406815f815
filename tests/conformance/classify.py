#!/usr/bin/env python3
"""Classifies every test in a libiscsi `iscsi-test-cu -v` log as pass, skip or fail.

CUnit's verbose runner prints, per test,

    Suite: <suite>
      Test: <name> ...<whatever the test prints>
    <verdict>

where the verdict ("passed" or "FAILED") directly follows the test's own output (on the
same line when the test printed nothing, on its own line after a newline otherwise), and a
FAILED verdict is followed by numbered assertion lines ("    1. file.c:38  - CU_ASSERT...").

libiscsi's tests report "not applicable / not implemented" by printing "[SKIPPED] <why>" and
returning, which CUnit counts as passed. Those are skips here:

    pass  CUnit verdict "passed" and no "[SKIPPED]" in the test's output
    skip  CUnit verdict "passed" and the test printed "[SKIPPED]" (the reason is kept)
    fail  CUnit verdict "FAILED" (reason: the test's "[FAILED]" line or the first assertion),
          or no verdict at all (the run hung or died inside the test)

Running without -t runs each suite once per test family (ALL, SCSI, iSCSI, ...), so a name
can appear several times; the worst outcome counts (fail over skip over pass).

Usage: classify.py LOG [--out FILE] [--list pass|skip|fail] [--reasons]
Output format (FILE or stdout): one line per test, "Suite.Test<TAB>status<TAB>reason",
sorted by name.
"""

import argparse
import collections
import re
import sys

SUITE_RE = re.compile(r"^Suite: (\S+)")
TEST_RE = re.compile(r"^  Test: (\S+) \.\.\.(.*)$")
ASSERT_RE = re.compile(r"^\s+\d+\. \S+:\d+\s+- ")
END_RE = re.compile(r"^(Run Summary:|--Run Summary:)")
STATUSES = ("pass", "skip", "fail")
RANK = {"pass": 0, "skip": 1, "fail": 2}


def _verdict(lines):
    """(status, index of the verdict line) of one test's block, or (None, len) if none.

    lines[0] is what followed "Test: name ..." on its own line. The verdict starts a line
    when the test's output ended with a newline (or printed nothing), and ends a line
    otherwise. Teardown output may follow it on the same line ("passed    [FAILED] PRIN
    command failed ..." is a pass whose cleanup complained), so the first verdict counts.
    """
    for i, line in enumerate(lines):
        for word, status in (("passed", "pass"), ("FAILED", "fail")):
            if line.startswith(word):
                return status, i
        s = line.rstrip()
        if s.endswith("FAILED") and not s.endswith("[FAILED]") and "[FAILED]" not in s:
            return "fail", i
        if s.endswith("passed") and "[" not in s:
            return "pass", i
    return None, len(lines)


def _reason(lines, status, at=None):
    """Why a test skipped or failed; `at` is the index of the verdict line (text after it
    is teardown output, a last resort for the reason)."""
    own = lines if at is None else lines[:at]
    if status == "skip":
        m = re.search(r"\[SKIPPED\]\s*([^\n]*)", "\n".join(own))
        return m.group(1).strip() if m else ""
    if status == "fail":
        m = re.search(r"\[FAILED\]\s*([^\n]*)", "\n".join(own))
        if m:
            return m.group(1).strip()
        for line in lines:
            if ASSERT_RE.match(line):
                # Teardown output may be glued to the assertion line: "...(x)    [FAILED] ..."
                return re.split(r"\s{2,}\[", line.strip(), maxsplit=1)[0]
        m = re.search(r"\[FAILED\]\s*([^\n]*)", "\n".join(lines))
        return m.group(1).strip() if m else ""
    return ""


def parse(text):
    """Returns {name: (status, reason)} for every test in the log, in order of appearance."""
    blocks = []  # (name, [lines])
    suite = None
    cur = None
    for line in text.splitlines():
        if END_RE.match(line):
            cur = None
            continue
        m = SUITE_RE.match(line)
        if m:
            suite = m.group(1)
            cur = None
            continue
        m = TEST_RE.match(line)
        if m and suite is not None:
            cur = (f"{suite}.{m.group(1)}", [m.group(2)])
            blocks.append(cur)
            continue
        if cur is not None:
            cur[1].append(line)

    res = collections.OrderedDict()
    for name, lines in blocks:
        v, at = _verdict(lines)
        own = lines[:at]  # the test's own output, before the verdict
        if v is None:
            status, reason = "fail", "no CUnit verdict (the run hung or stopped in this test)"
        elif v == "fail":
            status, reason = "fail", _reason(lines, "fail", at)
        elif any("[SKIPPED]" in ln for ln in own):
            status, reason = "skip", _reason(own, "skip")
        else:
            status, reason = "pass", ""
        old = res.get(name)
        if old is None or RANK[status] > RANK[old[0]]:
            res[name] = (status, reason)
    return res


def last_test(text):
    """The name of the last test the log started (where a killed run stopped)."""
    suite, last = None, None
    for line in text.splitlines():
        m = SUITE_RE.match(line)
        if m:
            suite = m.group(1)
            continue
        m = TEST_RE.match(line)
        if m and suite is not None:
            last = f"{suite}.{m.group(1)}"
    return last


def clean(reason):
    return " ".join(reason.replace("\t", " ").split())


def format_results(res):
    return "".join(f"{k}\t{v[0]}\t{clean(v[1])}\n" for k, v in sorted(res.items()))


def read_results(path):
    """Reads a results/expected file: "Suite.Test<TAB>status[<TAB>reason]" lines."""
    out = collections.OrderedDict()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in STATUSES:
                raise ValueError(f"{path}:{n}: expected 'Suite.Test<TAB>pass|skip|fail[<TAB>reason]'")
            out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return out


def counts(res):
    c = collections.Counter(v[0] for v in res.values())
    return f"tests={len(res)} pass={c['pass']} skip={c['skip']} fail={c['fail']}"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("--out", help="write the classification here instead of stdout")
    ap.add_argument("--list", choices=STATUSES, help="print only tests with this status")
    ap.add_argument("--reasons", action="store_true", help="print skip/fail reasons by count")
    a = ap.parse_args(argv)
    with open(a.log, errors="replace") as f:
        res = parse(f.read())
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(format_results(res))
    elif a.list:
        for k, v in sorted(res.items()):
            if v[0] == a.list:
                print(f"{k}\t{clean(v[1])}")
    elif not a.reasons:
        sys.stdout.write(format_results(res))
    if a.reasons:
        rc = collections.Counter((v[0], clean(v[1])) for v in res.values() if v[0] != "pass")
        for (st, r), n in rc.most_common():
            print(f"{n:4d}  {st}  {r}")
    print(counts(res), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
