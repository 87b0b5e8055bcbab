import pytest

from core.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5),
        ("1m30s", 90),
        ("2h", 7200),
        ("7d", 7 * 86400),
        ("250ms", 0.25),
        ("10", 10),
        ("1.5", 1.5),
        ("1w", 604800),
        (3, 3.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5 s", "s5", "5x", "1m 30s", "-1s", "5s3"])
def test_parse_duration_rejects_with_a_message(text):
    with pytest.raises(ValueError, match="is not a duration like"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("512k", 512_000), ("256Mi", 256 * 2**20), ("1G", 10**9), ("2GiB", 2 * 2**30), ("1.5Ki", 1536)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "12 parsecs", "M", "-1k"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_format_duration():
    assert format_duration(59) == "59s"
    assert format_duration(90) == "1m30s"
    assert format_duration(3 * 86400) == "3d"
