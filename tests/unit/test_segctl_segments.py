"""`segctl segments validate`: what a user sees for a good and a bad catalog."""

from __future__ import annotations

from segctl.cli import main


def test_validate_the_shipped_catalog(capsys):
    assert main(["segments", "validate"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "14 segments" in out and "category-browsers" in out


def test_validate_names_file_segment_and_field(tmp_path, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_text("version: 1\nsegments:\n  vip:\n    name: VIP\n    description: d\n"
                   "    when: {aggregate: {fn: sum, signal: order_placed, compare: 'over 500'}}\n")
    assert main(["segments", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "mine.yaml" in err and "segment 'vip'" in err and "when.aggregate.compare" in err


def test_validate_a_missing_file_is_an_error(tmp_path, capsys):
    assert main(["segments", "validate", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err
