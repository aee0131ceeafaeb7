from __future__ import annotations

import pytest

from bridge.wire import cursor


@pytest.mark.parametrize("offsets", [(0,), (120, 98, 77), tuple(range(100)), (2**63 - 1, 0)])
def test_round_trip(offsets: tuple[int, ...]) -> None:
    text = cursor.encode(offsets)
    assert text.isascii()
    assert "\n" not in text
    assert "~" not in text
    assert "," not in text
    assert cursor.parse(text) == offsets


def test_format_is_offsets_joined_by_dots() -> None:
    assert cursor.encode([120, 98, 77]) == "120.98.77"


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "1.",
        ".1",
        "1..2",
        "-1",
        "+1",
        "1.a",
        " 1",
        "1 ",
        "1\n2",
        "\u0661",
        "1e3",
        "0x10",
        "9" * 20,
        "1." * 5000,
    ],
)
def test_malformed_ids_are_refused(text: str) -> None:
    with pytest.raises(cursor.CursorError):
        cursor.parse(text)


def test_missing_partitions_mean_from_the_beginning() -> None:
    assert cursor.offset_for((5, 6), 1) == 6
    assert cursor.offset_for((5, 6), 2) == 0


def test_a_stream_over_several_topics_joins_their_cursors_with_tilde() -> None:
    assert cursor.encode_streams([(120, 98, 77), (5, 6)], ["Zk3q", "AB-_"]) == "120.98.77@Zk3q~5.6@AB-_"
    assert cursor.parse_streams("120.98.77@Zk3q~5.6@AB-_", 2) == (((120, 98, 77), (5, 6)), ("Zk3q", "AB-_"))
    assert cursor.encode_streams([(1, 2)], ["Zk3q"]) == "1.2@Zk3q"  # one topic: a plain single-topic id
    assert cursor.parse_streams("1.2@Zk3q", 1) == (((1, 2),), ("Zk3q",))


def test_ids_without_tags_are_read_as_before() -> None:
    assert cursor.parse_streams("120.98.77~5.6", 2) == (((120, 98, 77), (5, 6)), ("", ""))
    assert cursor.parse_streams("120.98.77@Zk3q~5.6", 2) == (((120, 98, 77), (5, 6)), ("Zk3q", ""))
    assert cursor.encode_streams([(1, 2), (3,)], ["", ""]) == "1.2~3"  # topics without a Kafka topic id


def test_the_tag_is_the_first_24_bits_of_the_topic_id() -> None:
    assert cursor.topic_tag(bytes.fromhex("66493aa0" + "00" * 12)) == "Zkk6"
    assert cursor.topic_tag(bytes.fromhex("fbff00") + bytes(13)) == "-_8A"  # base64url: no '+', '/' or '='
    assert cursor.topic_tag(bytes(16)) == ""  # the all-zero id: the broker has none
    assert cursor.parse_tagged(cursor.encode((7, 8), "Zkk6")) == ((7, 8), "Zkk6")


@pytest.mark.parametrize("text", ["1.2@", "1.2@abc", "1.2@abcde", "1.2@ab/c", "1.2@ab+c", "1.2@a=bc", "@abcd",
                                  "1.2@abcd@abcd", "1.2@abc\n"])  # fmt: skip
def test_malformed_tags_are_refused(text: str) -> None:
    with pytest.raises(cursor.CursorError):
        cursor.parse(text)


@pytest.mark.parametrize(("text", "topics"), [("1~2", 1), ("1.2", 2), ("1~2", 3), ("1~", 2), ("~", 2), ("1~~2", 3)])
def test_an_id_for_another_number_of_topics_is_rejected(text: str, topics: int) -> None:
    with pytest.raises(cursor.CursorError):
        cursor.parse_streams(text, topics)


@pytest.mark.parametrize(("stream", "partition"), [(0, 0), (0, 2), (1, 0), (1, 1), (2, 0)])
def test_encode_around_splits_an_id_at_one_offset(stream: int, partition: int) -> None:
    streams = [[120, 98, 77], [5, 6], [3]]
    tags = ["Zk3q", "", "AB-_"]
    before, after = cursor.encode_around(streams, tags, stream, partition)
    streams[stream][partition] = 4242
    assert before + "4242" + after == cursor.encode_streams(streams, tags)
