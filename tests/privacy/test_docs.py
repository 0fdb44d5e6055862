"""docs/privacy.md backs each claim with a named test; those tests must exist."""

import re

from tests.support import REPO


def test_every_test_named_in_the_privacy_doc_exists():
    doc = (REPO / "docs" / "privacy.md").read_text(encoding="utf-8")
    named = re.findall(r"`(tests/[\w/]+\.py)((?:::\w+)?)`", doc)
    shorthand = re.findall(r"`::(\w+)`", doc)  # "::test_x" after a full reference
    assert len(named) >= 10
    files = set()
    for path, test in named:
        source = (REPO / path).read_text(encoding="utf-8")
        files.add(path)
        if test:
            assert f"def {test[2:]}(" in source, f"{path}{test} is not a test"
    for test in shorthand:
        assert any(f"def {test}(" in (REPO / f).read_text(encoding="utf-8") for f in files), test
