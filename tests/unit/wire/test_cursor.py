from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.wire import cursor

NEAR_1E9 = [10**9 + (p * 7919) % 10**5 for p in range(256)]  # a balanced, long-lived topic


@pytest.mark.parametrize("offsets", [(0,), (120, 98, 77), tuple(range(100)), (2**63 - 1, 0), tuple(NEAR_1E9),
                                     (2**63 - 1, 2**63 - 2), (4095, 4096), (0,) * 300])  # fmt: skip
def test_round_trip(offsets: tuple[int, ...]) -> None:
    text = cursor.encode(offsets)
    assert text.isascii()
    assert not {"\n", "\r", "\x00", "~", ",", "@"} & set(text)
    assert cursor.parse(text) == offsets


def test_few_partitions_keep_the_readable_form() -> None:
    assert cursor.encode([120, 98, 77]) == "120.98.77"
    assert cursor.encode([5]) == "5"
    assert cursor.encode([10**9]) == "1000000000"
    assert cursor.encode([30, 30, 31]) == "30.30.31"  # -10.eef is shorter, by too little to lose readability
    assert cursor.encode([0] * 9) == "0.0.0.0.0.0.0.0.0"  # -10.AAAAAAAAA: 4 shorter
    assert cursor.encode([0] * 13) == ".".join("0" * 13)  # -10.AAAAAAAAAAAAA: 8 shorter, still kept
    assert cursor.encode([0] * 14) == "-10." + "A" * 14  # 9 shorter


def test_the_compact_form_is_a_width_a_base_and_fixed_width_differences() -> None:
    assert cursor.encode([1000000000, 1000000123, 1000065432]) == "-3999997440.AoAAp7QmY"
    assert cursor.parse("-3999997440.AoAAp7QmY") == (1000000000, 1000000123, 1000065432)
    assert cursor.encode([0] * 20) == "-10." + "A" * 20
    assert cursor.parse("-10._") == (63,)
    assert cursor.parse("-2100.A_") == (163,)  # any base an encoder chose: not only multiples of 4096


def test_a_wide_topic_of_a_long_life_costs_at_most_4_bytes_a_partition() -> None:
    text = cursor.encode(NEAR_1E9, "Zk3q")
    assert len(text) <= 4 * 256
    assert len(cursor.encode(NEAR_1E9)) == len("-3999997440.") + 3 * 256  # 3 bytes a partition, 12 for the head


@pytest.mark.parametrize("width", range(1, 10))
def test_every_width_holds_its_largest_difference(width: int) -> None:
    base = 999997440  # a multiple of 4096
    offsets = [base + 7, base + 64**width - 1, base] * 10
    text = cursor.encode(offsets)
    assert text.startswith(f"-{width}{base}.")
    assert cursor.parse(text) == tuple(offsets)


def test_spreads_too_wide_for_9_digits_are_written_readable() -> None:
    assert cursor.encode([0, 2**54, 5]) == f"0.{2**54}.5"
    assert cursor.encode([0, 2**54 - 1] * 10).startswith("-90.")


@given(st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=40) | st.lists(
    st.integers(10**9, 10**9 + 10**5), min_size=1, max_size=300))  # fmt: skip
def test_either_form_reads_as_the_plain_decimal_vector(offsets: list[int]) -> None:
    text = cursor.encode(offsets)
    assert cursor.parse(text) == tuple(offsets)
    assert len(text) <= len(".".join(map(str, offsets)))  # never longer than the readable form
    assert text == ".".join(map(str, offsets)) or text.startswith("-")


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=20),
       st.lists(st.tuples(st.integers(0, 24), st.integers(0, 10**4)), max_size=60),
       st.sampled_from(["", "Zk3q"]))  # fmt: skip
def test_a_writer_always_reads_as_its_offsets_encoded_whole(
    start: list[int], moves: list[tuple[int, int]], tag: str
) -> None:
    writer = cursor.CursorWriter(start, tag)
    offsets = list(start)
    for partition, step in moves:
        if partition >= len(offsets):  # partitions added to the topic
            added = [0] * (partition + 1 - len(offsets))
            writer.extend(added)
            offsets.extend(added)
            assert writer.text == cursor.encode(offsets, tag)
        # mostly forward, as records arrive; now and then back, as no record does
        offsets[partition] = offsets[partition] + step if step % 7 else max(0, offsets[partition] - step)
        assert writer.advance(partition, offsets[partition]) == cursor.encode(offsets, tag)
    assert writer.offsets == offsets


def test_a_writer_takes_no_record_of_a_partition_it_was_not_given() -> None:
    writer = cursor.CursorWriter([5, 6, 7])
    with pytest.raises(IndexError):
        writer.advance(3, 1)


@pytest.mark.parametrize(
    ("start", "moves"),
    [
        ([0] * 20, [(p, 4096 + p) for p in range(20)]),  # all leave the base's step: the base moves up
        ([0] * 20, [(0, 63), (0, 64), (1, 4095), (1, 4096)]),  # the width grows, the base stays
        ([4096, 4160] * 10, [(1, 4100), (3, 4100), *((p, 4100) for p in range(5, 20, 2))]),  # the width shrinks
        ([5000, 8000] * 10, [(1, 10)]),  # back, below the base
        ([5000, 6000] * 10, [(p, 9000) for p in range(0, 20, 2)]),  # the last one left in the base's step
    ],
)
def test_a_writer_moves_its_base_and_width_when_the_offsets_ask(start: list[int], moves: list[tuple[int, int]]) -> None:
    writer = cursor.CursorWriter(start)
    offsets = list(start)
    for partition, offset in moves:
        offsets[partition] = offset
        assert writer.advance(partition, offset) == cursor.encode(offsets)


def test_a_writer_rewrites_one_field_along_a_run() -> None:
    writer = cursor.CursorWriter(NEAR_1E9)
    before = writer.text
    after = writer.advance(7, NEAR_1E9[7] + 1)
    start = len("-3999997440.") + 7 * 3
    assert after[:start] == before[:start]
    assert after[start + 3 :] == before[start + 3 :]
    assert cursor.parse(after)[7] == NEAR_1E9[7] + 1
    writer.extend([10**9])
    assert cursor.parse(writer.text) == (*NEAR_1E9[:7], NEAR_1E9[7] + 1, *NEAR_1E9[8:], 10**9)


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
        "-",
        "-3",
        "-3100",
        "-3100.",  # no partition
        "-0100.A",  # width 0
        "-A100.A",
        "-3100.AA",  # not a multiple of the width
        "-3100.AAAA",
        "-301.AAA",  # a base with a leading zero
        "-3-1.AAA",
        "-3.AAA",
        "-3100.AA=",
        "-3100.AA+",
        "-3100.AA/",
        "-3100.AA.",
        "-3100.AAA.AAA",
        "-3100,AAA",
        "-3100.AAA ",
        "-3100.AAA\n",
        "-3100.AA\u0100",
        "-1" + "9" * 20 + ".A",  # a base past 19 digits
        "-1" + str(2**63 - 1) + ".B",  # an offset past the largest Kafka offset
        "-9" + str(2**63 - 2**54 + 1) + "._________",
        "--3100.AAA",
        "1.-3100.AAA",
        "-3100.AAA" * 2,
        "-3100." + "A" * 9000,
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


@pytest.mark.parametrize("text", ["1.2@", "-10.AB@", "-10.AB@abc", "-10.AB@Zk3q@Zk3q", "@Zk3q-10.AB",
                                  "1.2@abc", "1.2@abcde", "1.2@ab/c", "1.2@ab+c", "1.2@a=bc", "@abcd",
                                  "1.2@abcd@abcd", "1.2@abc\n"])  # fmt: skip
def test_malformed_tags_are_refused(text: str) -> None:
    with pytest.raises(cursor.CursorError):
        cursor.parse(text)


@pytest.mark.parametrize(("text", "topics"), [("1~2", 1), ("1.2", 2), ("1~2", 3), ("1~", 2), ("~", 2), ("1~~2", 3)])
def test_an_id_for_another_number_of_topics_is_rejected(text: str, topics: int) -> None:
    with pytest.raises(cursor.CursorError):
        cursor.parse_streams(text, topics)


def test_the_compact_form_takes_a_tag_and_mixes_with_the_readable_one_across_topics() -> None:
    assert cursor.encode([0] * 20, "Zk3q") == "-10." + "A" * 20 + "@Zk3q"
    assert cursor.parse_tagged("-10.AAAAAB@Zk3q") == ((0, 0, 0, 0, 0, 1), "Zk3q")
    text = cursor.encode_streams([(120, 98, 77), NEAR_1E9, [0] * 20], ["Zk3q", "AB-_", ""])
    first, second, third = text.split("~")
    assert (first, second[:12], third) == ("120.98.77@Zk3q", "-3999997440.", "-10." + "A" * 20)
    assert cursor.parse_streams(text, 3) == (((120, 98, 77), tuple(NEAR_1E9), (0,) * 20), ("Zk3q", "AB-_", ""))
    # an id of the readable form, as every earlier version wrote it, beside a compact one
    assert cursor.parse_streams("120.98.77~-10.AAAAAB@AB-_", 2) == (((120, 98, 77), (0, 0, 0, 0, 0, 1)), ("", "AB-_"))


@pytest.mark.parametrize(("stream", "partition"), [(0, 0), (0, 2), (1, 0), (1, 1), (2, 0), (2, 255)])
def test_around_splits_a_stream_id_at_one_topic(stream: int, partition: int) -> None:
    streams = [[120, 98, 77], [5, 6], list(NEAR_1E9)]
    tags = ["Zk3q", "", "AB-_"]
    writers = [cursor.CursorWriter(offsets, tag) for offsets, tag in zip(streams, tags, strict=True)]
    before, after = cursor.around(writers, stream)
    streams[stream][partition] = streams[stream][partition] + 4242
    assert before + writers[stream].advance(partition, streams[stream][partition]) + after == cursor.encode_streams(
        streams, tags
    )
    assert cursor.stream_id(writers) == cursor.encode_streams(streams, tags)
