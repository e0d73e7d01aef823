"""The destinations file (docs/destinations.md): the contract's example, each error with its line,
all errors at once, and `segctl destinations validate`."""

from __future__ import annotations

import textwrap

import pytest
from segctl.cli import main
from segmentation.destinations.config import (
    DestinationsError,
    KlaviyoDestination,
    MailchimpDestination,
    WebhookDestination,
    load_destinations,
)
from segmentation.domain.catalog import load_catalog
from segmentation.errors import InvalidInputError

EXAMPLE = """\
version: 1
destinations:
  - id: klaviyo-main              # lower-case letters, digits, '-'
    type: klaviyo
    segments:                     # segment id -> Klaviyo list id
      recent-buyers: {list: "XyZ123"}
      at-risk: {list: "AbC456"}
    properties:                   # Klaviyo custom property name -> trait (or "segments": the current segment ids)
      PreferredCategory: preferred_category
      LastPurchaseDate: last_order_at
      AverageOrderValue: average_order_value
      Segments: segments
  - id: mailchimp-main
    type: mailchimp
    list: "a1b2c3d4e5"            # the audience id
    segments:                     # segment id -> tag name
      recent-buyers: {tag: "Recent Buyers"}
      at-risk: {tag: "At-Risk"}
    merge_fields:                 # merge tag -> trait
      PREFCAT: preferred_category
      LASTORDER: last_order_at
      AOV: average_order_value
  - id: hooks
    type: webhook                 # Standard Webhooks signed POST of each change
    url: "https://example.com/segments"
"""


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def errors(text: str, catalog) -> list[str]:
    with pytest.raises(DestinationsError) as info:
        load_destinations(textwrap.dedent(text), catalog, "destinations.yaml")
    return info.value.errors


def one_error(text: str, catalog) -> str:
    found = errors(text, catalog)
    assert len(found) == 1, found
    return found[0]


def test_the_contract_example_is_valid_against_the_default_catalog(catalog):
    d = load_destinations(EXAMPLE, catalog, "destinations.yaml")
    assert [x.id for x in d.destinations] == ["klaviyo-main", "mailchimp-main", "hooks"]
    klaviyo, mailchimp, hooks = d.destinations
    assert isinstance(klaviyo, KlaviyoDestination) and isinstance(mailchimp, MailchimpDestination)
    assert isinstance(hooks, WebhookDestination) and hooks.url == "https://example.com/segments"
    assert {s: t.list_id for s, t in klaviyo.segments.items()} == {"recent-buyers": "XyZ123", "at-risk": "AbC456"}
    assert klaviyo.properties["Segments"] == "segments"
    assert mailchimp.list_id == "a1b2c3d4e5" and mailchimp.segments["at-risk"].tag == "At-Risk"
    assert mailchimp.merge_fields == {"PREFCAT": "preferred_category", "LASTORDER": "last_order_at", "AOV": "average_order_value"}
    assert d.get("hooks") is hooks


def test_the_error_is_invalid_input(catalog):
    with pytest.raises(InvalidInputError):
        load_destinations("version: 2\ndestinations: []\n", catalog, "d.yaml")


def test_a_family_instance_is_a_segment(catalog):
    load_destinations(textwrap.dedent("""\
        version: 1
        destinations:
          - id: k
            type: klaviyo
            segments:
              category-browsers:shoes: {list: "L1"}
              category-browsers:home-decor: {list: "L2"}
        """), catalog, "d.yaml")


KLAVIYO = """\
version: 1
destinations:
  - id: k
    type: klaviyo
    segments:
      recent-buyers: {list: "L1"}
"""


@pytest.mark.parametrize(("extra", "expected"), [
    # segments: must be in the catalog; families need a value, and only families take one
    ("      recent-buyer: {list: L2}\n", "destinations.yaml:7: segment 'recent-buyer' is not in the catalog"),
    ("      category-browsers: {list: L2}\n", "destinations.yaml:7: segment 'category-browsers' is a family"),
    ("      at-risk:shoes: {list: L2}\n", "destinations.yaml:7: segment 'at-risk:shoes' is not in the catalog ('at-risk' is not a family)"),
    ("      category-browser:shoes: {list: L2}\n", "destinations.yaml:7: segment 'category-browser:shoes' is not in the catalog"),
    ("      category-browsers:Big Shoes: {list: L2}\n", "destinations.yaml:7: segment 'category-browsers:Big Shoes': 'Big Shoes' is not a category"),
    # one segment per list
    ("      at-risk: {list: L1}\n", "destinations.yaml:7: list 'L1' is already the list of segment 'recent-buyers' (line 6)"),
    # strict: unknown keys, missing keys, wrong types
    ("      at-risk: {list: L2, colour: red}\n", "destinations.yaml:7: unknown key 'colour' in segments.at-risk"),
    ("      at-risk: {list: 123}\n", "destinations.yaml:7: segments.at-risk.list: must be text, got 123 (put it in quotes)"),
    ("    segmnts: {}\n", "destinations.yaml:7: unknown key 'segmnts' (a klaviyo destination has: id, type, segments, properties)"),
    # properties: a computed trait, or `segments`
    ("    properties:\n      Category: preferred_categry\n",
     "destinations.yaml:8: property 'Category': 'preferred_categry' is not a computed trait of the catalog"),
    ("    properties:\n      Category: preferred_category\n      Category: segments\n",
     "destinations.yaml:9: property 'Category' is given twice (first on line 8)"),
    ("      recent-buyers: {list: L9}\n", "destinations.yaml:7: segment 'recent-buyers' is given twice (first on line 6)"),
])
def test_each_klaviyo_error_names_its_line(catalog, extra, expected):
    assert one_error(KLAVIYO + extra, catalog).startswith(expected)


MAILCHIMP = """\
version: 1
destinations:
  - id: m
    type: mailchimp
    list: "a1b2c3d4e5"
    segments:
      recent-buyers: {tag: "Recent Buyers"}
    merge_fields:
      PREFCAT: preferred_category
"""


@pytest.mark.parametrize(("extra", "expected"), [
    ("      AOV: average_order_valu\n", "destinations.yaml:10: merge field 'AOV': 'average_order_valu' is not a computed trait"),
    ("      SEGS: segments\n", None),
    ("      prefcat2: preferred_category\n", "destinations.yaml:10: merge tag 'prefcat2' must be 1 to 10 upper-case letters, digits or '_' (Mailchimp's limit)"),
    ("      LASTORDERAT: last_order_at\n", "destinations.yaml:10: merge tag 'LASTORDERAT' must be 1 to 10"),
    ("      PREFCAT: last_order_at\n", "destinations.yaml:10: merge field 'PREFCAT' is given twice (first on line 9)"),
])
def test_each_mailchimp_merge_field_error_names_its_line(catalog, extra, expected):
    if expected is None:
        load_destinations(MAILCHIMP + extra, catalog, "destinations.yaml")
    else:
        assert one_error(MAILCHIMP + extra, catalog).startswith(expected)


def test_a_misspelt_key_is_unknown_and_the_right_one_missing(catalog):
    assert errors(KLAVIYO + "      at-risk: {lst: L2}\n", catalog) == [
        "destinations.yaml:7: missing key 'list' in segments.at-risk",
        "destinations.yaml:7: unknown key 'lst' in segments.at-risk",
    ]


def test_two_segments_to_one_mailchimp_tag(catalog):
    text = MAILCHIMP.replace("    merge_fields:", "      at-risk: {tag: \"recent buyers\"}\n    merge_fields:")
    assert one_error(text, catalog) == ("destinations.yaml:8: tag 'recent buyers' is already the tag of segment "
                                        "'recent-buyers' (line 7): one segment per tag")


def test_a_mailchimp_destination_needs_its_audience(catalog):
    assert one_error(MAILCHIMP.replace('    list: "a1b2c3d4e5"\n', ""), catalog) == "destinations.yaml:3: missing key 'list'"


def test_a_destination_that_sends_nothing(catalog):
    assert one_error("version: 1\ndestinations:\n  - {id: k, type: klaviyo}\n", catalog) == (
        "destinations.yaml:3: destination 'k' sends nothing: give segments, properties or both")


@pytest.mark.parametrize(("url", "ok"), [
    ("https://example.com/segments", True),
    ("http://127.0.0.1:8080/hook", True),
    ("http://localhost/hook", True),
    ("http://example.com/segments", False),
    ("http://localhost.example.com/x", False),
    ("ftp://example.com/x", False),
    ("https://", False),
    ("example.com/segments", False),
])
def test_webhook_url_is_https_or_local_http(catalog, url, ok):
    text = f"version: 1\ndestinations:\n  - id: hooks\n    type: webhook\n    url: \"{url}\"\n"
    if ok:
        assert load_destinations(text, catalog, "destinations.yaml").destinations[0].url == url
    else:
        assert one_error(text, catalog) == (f"destinations.yaml:5: url {url!r} must be https:// "
                                            "(http:// only for 127.0.0.1 or localhost)")


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\ndestinations:\n  - id: Main_K\n    type: webhook\n    url: https://x.org\n",
     "destinations.yaml:3: destination id 'Main_K' must be lower-case letters, digits and '-'"),
    ("version: 1\ndestinations:\n  - id: a\n    type: sendgrid\n",
     "destinations.yaml:4: type 'sendgrid' is not one of: klaviyo, mailchimp, webhook"),
    ("version: 1\ndestinations:\n  - id: a\n    url: https://x.org\n",
     "destinations.yaml:3: missing key 'type' (one of: klaviyo, mailchimp, webhook)"),
    ("version: 1\ndestinations:\n  - type: webhook\n    url: https://x.org\n", "destinations.yaml:3: missing key 'id'"),
    ("version: 1\ndestinations:\n  - id: a\n    type: webhook\n    url: https://x.org\n    secret: s\n",
     "destinations.yaml:6: unknown key 'secret' (a webhook destination has: id, type, url)"),
    ("version: 1\ndestinations:\n  - just text\n", "destinations.yaml:3: a destination must be a mapping with 'id' and 'type'"),
    ("version: 2\ndestinations: []\n", "destinations.yaml:1: version 2 is not supported (version: 1)"),
    ("destinations: []\n", "destinations.yaml:1: missing key 'version' (version: 1)"),
    ("version: 1\n", "destinations.yaml:1: missing key 'destinations' (a list)"),
    ("version: 1\ndestinations: {}\n", "destinations.yaml:2: destinations must be a list"),
    ("version: 1\ndestinations: []\nextra: 1\n", "destinations.yaml:3: unknown key 'extra' (the file has: version, destinations)"),
    ("- a list\n", "destinations.yaml:1: the file must be a mapping with 'version' and 'destinations'"),
    ("", "destinations.yaml:1: the file must be a mapping with 'version' and 'destinations'"),
    ("version: 1\ndestinations: [\n", "destinations.yaml:3: not valid YAML"),
])
def test_each_file_and_destination_error_names_its_line(catalog, text, expected):
    assert one_error(text, catalog).startswith(expected)


def test_destination_ids_are_unique(catalog):
    text = EXAMPLE.replace("  - id: hooks", "  - id: klaviyo-main")
    assert one_error(text, catalog) == "destinations.yaml:23: destination id 'klaviyo-main' is used twice (first on line 3)"


BROKEN = """\
version: 1
destinations:
  - id: klaviyo-main
    type: klaviyo
    segments:
      recent-buyer: {list: "XyZ123"}
      at-risk: {list: "XyZ123"}
    properties:
      PreferredCategory: preferred_categry
  - id: mailchimp-main
    type: mailchimp
    list: "a1b2c3d4e5"
    segments:
      recent-buyers: {tag: "Recent Buyers"}
    merge_fields:
      preferred: preferred_category
    extra: true
  - id: klaviyo-main
    type: webhook
    url: "http://example.com/segments"
"""


def test_every_error_is_reported_in_line_order(catalog):
    assert errors(BROKEN, catalog) == [
        "destinations.yaml:6: segment 'recent-buyer' is not in the catalog",
        "destinations.yaml:7: list 'XyZ123' is already the list of segment 'recent-buyer' (line 6): one segment per list",
        "destinations.yaml:9: property 'PreferredCategory': 'preferred_categry' is not a computed trait of the catalog "
        "(nor 'segments', the segment ids)",
        "destinations.yaml:16: merge tag 'preferred' must be 1 to 10 upper-case letters, digits or '_' (Mailchimp's limit)",
        "destinations.yaml:17: unknown key 'extra' (a mailchimp destination has: id, type, list, segments, merge_fields)",
        "destinations.yaml:18: destination id 'klaviyo-main' is used twice (first on line 3)",
        "destinations.yaml:20: url 'http://example.com/segments' must be https:// (http:// only for 127.0.0.1 or localhost)",
    ]


def test_a_custom_catalog_decides_which_segments_and_traits_exist(tmp_path):
    from segmentation.domain.catalog import Catalog

    mine = Catalog.from_yaml(textwrap.dedent("""\
        version: 1
        traits:
          orders: {count: {signal: order_placed}}
        segments:
          buyers:
            name: Buyers
            description: Bought once.
            when: {event: {signal: order_placed}}
        """), "mine.yaml")
    load_destinations("version: 1\ndestinations:\n  - id: k\n    type: klaviyo\n    segments: {buyers: {list: L}}\n"
                      "    properties: {Orders: orders}\n", mine, "d.yaml")
    assert errors(EXAMPLE, mine)[:2] == ["destinations.yaml:6: segment 'recent-buyers' is not in the catalog",
                                         "destinations.yaml:7: segment 'at-risk' is not in the catalog"]


# -- segctl destinations validate --------------------------------------------------------------------


def test_cli_valid_file_prints_a_line_per_destination(tmp_path, capsys):
    path = tmp_path / "destinations.yaml"
    path.write_text(EXAMPLE)
    assert main(["destinations", "validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"{path}: valid, 3 destinations")
    assert lines[1:] == [
        "  klaviyo-main: klaviyo, 2 segments (as lists), 3 traits + the segment ids",
        "  mailchimp-main: mailchimp, audience a1b2c3d4e5, 2 segments (as tags), 3 traits",
        "  hooks: webhook, every segment change to https://example.com/segments",
    ]


def test_cli_invalid_file_prints_every_error_and_exits_2(tmp_path, capsys):
    path = tmp_path / "destinations.yaml"
    path.write_text(BROKEN)
    assert main(["destinations", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "7 errors" in err.splitlines()[0]
    assert f"{path}:6: segment 'recent-buyer' is not in the catalog" in err.splitlines()
    assert sum(line.startswith(f"{path}:") for line in err.splitlines()) == 7


@pytest.mark.parametrize("content", [None, b"version: 1\ndestinations: [\n", b"\xff\xfe\x00bad", b""])
def test_cli_missing_or_unparsable_file_is_a_clear_error(tmp_path, capsys, content):
    path = tmp_path / "destinations.yaml"
    if content is not None:
        path.write_bytes(content)
    assert main(["destinations", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err
    if content is None:
        assert "cannot read the destinations file: No such file or directory" in err


def test_cli_checks_against_the_catalog_given(tmp_path, capsys):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("version: 1\nsegments:\n  buyers:\n    name: Buyers\n    description: d\n"
                       "    when: {event: {signal: order_placed}}\n")
    path = tmp_path / "destinations.yaml"
    path.write_text(EXAMPLE)
    assert main(["destinations", "validate", str(path), "--catalog", str(catalog)]) == 2
    assert f"{path}:6: segment 'recent-buyers' is not in the catalog" in capsys.readouterr().err.splitlines()
    assert main(["destinations", "validate", str(path), "--catalog", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read the catalog" in capsys.readouterr().err


def test_cli_needs_a_file(capsys):
    with pytest.raises(SystemExit) as info:
        main(["destinations", "validate"])
    assert info.value.code == 2


def test_a_repeated_key_reports_the_value_yaml_kept_at_its_own_line(catalog):
    text = KLAVIYO + "    properties:\n      Category: preferred_category\n      Category: preferred_categry\n"
    assert errors(text, catalog) == [
        "destinations.yaml:9: property 'Category' is given twice (first on line 8)",
        "destinations.yaml:9: property 'Category': 'preferred_categry' is not a computed trait of the catalog "
        "(nor 'segments', the segment ids)",
    ]


def test_get_finds_a_destination_by_id(catalog):
    d = load_destinations(EXAMPLE, catalog, "destinations.yaml")
    assert d.get("mailchimp-main").type == "mailchimp"
    with pytest.raises(KeyError):
        d.get("nope")
