"""Reading Kafka: one consumer per process, manual assignment, no consumer group.

A served topic is known from the metadata (its partitions, every
``metadata_interval``) but read only while it is watched: its first stream
assigns it (``watch``), from the live end (the end offsets asked at that
moment); a stream with an id catches up from Kafka as ever. ``--linger-seconds``
after its last stream ended it is unassigned and its channel released
(``release``). Cost follows what browsers watch, not the size of the cluster.

The bridge's position in each partition lives in the hub's channels (the next
offset after the last record published), not in Kafka: there is nothing to
commit, and every change of assignment (``_apply_assignment``) seeks each read
partition back to exactly that offset, so watching or releasing one topic
neither skips nor repeats a record of another. Partitions that appear later in
a read topic begin at their first offset, since every record in them is new.

A watchdog (watchdog.py) asks the broker for the end offsets over a
client of its own; when records wait past positions that do not move for
``--stall-seconds``, the consumer is replaced by a new one, seeked to the
channels' positions: nothing is lost, nothing delivered twice.

Every client reads at ``--isolation-level``. Reading committed records, the
end is Kafka's last stable offset: a transaction still open holds back the
records after it, which is neither lag nor a stall.

Topics are known by their Kafka topic id (topics.py). A served topic that is
gone from the metadata, or is there under another id (deleted and created
again), is dropped: its streams end with a ``deleted`` event; a topic of that
name that exists again is a new one. A fetch past
a partition's end (its offsets went back) makes the watcher look at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import IllegalStateError, KafkaError, OffsetOutOfRangeError

from bridge.config import Settings
from bridge.fanout.hub import Hub
from bridge.kafka.decoding import SchemaTopics
from bridge.kafka.leaders import Leaders
from bridge.kafka.topics import TopicInfo, describe_topics
from bridge.kafka.watchdog import StallDetector
from bridge.wire.cursor import topic_tag

logger = logging.getLogger("bridge.source")  # the name operators' log filters know

# The broker answers a fetch once it has FETCH_MIN_BYTES, or after
# FETCH_MAX_WAIT_MS with what it has. Answering at the first byte (Kafka's
# default) hands the hub hundreds of tiny batches a second at a few thousand
# records/s, and every batch costs one write per subscriber: waiting up to
# 10 ms cuts that to about 90 batches a second for at most 10 ms of latency
# (20 ms: half the batches, 6 ms more at the median; performance.md#latency;
# aiokafka's default, 500 ms, would be the floor of a quiet topic's latency).
FETCH_MAX_WAIT_MS = 10
FETCH_MIN_BYTES = 64 * 1024
POLL_TIMEOUT_MS = 200
# Records published between two awaits: a reader far behind (a new partition
# read from its start) would otherwise encode a whole fetch, hundreds of
# thousands of records, while every connection waits.
BATCH_RECORDS = 10_000
RETRY_SECONDS = 1.0
# A broker that refuses the bridge (a wrong password) is retried ever more slowly, up to this.
MAX_RETRY_SECONDS = 15.0
# Metadata answers are quick; a broker that takes longer is reported unreachable.
METADATA_TIMEOUT_MS = 5000
# A metadata request goes to one broker picked at random: while a lost one is
# still listed (until the controller fences it, 9 s by Kafka's default), the
# request is tried again, at another pick, before Kafka counts as unreachable.
# A lost broker on loopback or a LAN refuses at once, so the tries are quick.
METADATA_TRIES = 10
# Looks at the end offsets per stall bound: a stall is found within 1.25 bounds.
LOOKS_PER_STALL_BOUND = 4
# A stream on a topic not read yet waits this long at most for its end offsets; then 503, and it retries.
WATCH_TIMEOUT_SECONDS = METADATA_TIMEOUT_MS / 1000


class KafkaSource:
    """Two tasks: the reader (getmany → hub) and the watcher (metadata every
    ``metadata_interval``: new topics and partitions, Kafka reachability).
    They share the consumer; every change of assignment is made without an
    await in between, so the reader never sees a partition without its
    channel or its exact position.

    Topics *known* (``partitions``: every served topic Kafka has) are apart
    from topics *read* (``hub.channels``: assigned, with a channel): a topic is
    read from its first ``watch`` until ``linger_seconds`` after its last ``unwatch``."""

    def __init__(self, settings: Settings, hub: Hub, kafka: Mapping[str, Any], schemas: SchemaTopics) -> None:
        self._settings = settings
        self._schemas = schemas
        self._kafka = kafka  # client.client_options: brokers, SASL, TLS
        self._hub = hub
        self._topic_ids: dict[str, bytes] = {}  # of the topics known
        self._read_ids: dict[str, bytes] = {}  # of the topics read: the id their channel was opened for
        self._look_now = asyncio.Event()  # the reader asks the watcher not to wait for its interval
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting_partitions: set[TopicPartition] = set()  # paused while their topic waits for the registry
        self._past_end: set[TopicPartition] = set()  # paused by _out_of_range until the watcher's next look
        self.assigned = False  # the first discovery is done: served topics are known
        self.reachable = False  # the last metadata request was answered
        self.failed: BaseException | None = None  # a task died: a bug, shown by /readyz and the log
        self.consumer_restarts = 0  # stalled consumers the watchdog replaced
        self.leaders = Leaders()  # served partitions' leaders: moves logged, leaderless ones counted
        self.partitions: dict[str, int] = {}  # served topics Kafka has: their partition counts (metadata only)
        self.watchers: dict[str, int] = {}  # open streams per watched topic
        self._lingering: dict[str, asyncio.TimerHandle] = {}  # unwatched topics still read, until their release
        self._round: asyncio.Task[None] | None = None  # reading the watched topics not read yet
        self.assignments = 0  # topics assigned on their first stream
        self.releases = 0  # topics unassigned after their linger

    @property
    def ready(self) -> bool:
        return self.assigned and self.reachable and self.failed is None

    def end_offset(self, topic: str, partition: int) -> int | None:
        """Where the partition's readable records end as of the consumer's last
        fetch (no request): the last stable offset when reading committed
        records, the log end offset otherwise; None until fetched."""
        tp = TopicPartition(topic, partition)
        end: int | None = self._consumer.highwater(tp)
        if self._settings.isolation_level == "read_committed" and end is not None:
            stable: int | None = self._consumer.last_stable_offset(tp)
            return stable if stable is not None and stable >= 0 else end
        return end

    def log_end_offset(self, topic: str, partition: int) -> int | None:
        """The partition's log end offset as of the consumer's last fetch; None until fetched."""
        end: int | None = self._consumer.highwater(TopicPartition(topic, partition))
        return end

    def start(self) -> None:
        """Begin in background tasks; aiokafka's clients must be made on the running loop."""
        self._consumer = self._new_consumer()
        self._probe = self._new_probe()
        self._client = AIOKafkaClient(**self._kafka, request_timeout_ms=METADATA_TIMEOUT_MS)
        self._assigning = asyncio.Lock()  # the watcher's assignments and the watchdog's replacements take turns
        self._start_task(self._run(), "kafka-source")

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self._kafka, group_id=None, enable_auto_commit=False, isolation_level=self._settings.isolation_level,
            # "none": a fetch out of range raises (_out_of_range), never moves a position silently
            auto_offset_reset="none", fetch_max_wait_ms=FETCH_MAX_WAIT_MS, fetch_min_bytes=FETCH_MIN_BYTES,
        )  # fmt: skip

    def _new_probe(self) -> AIOKafkaConsumer:
        """The watchdog's own client: a stalled consumer's connection cannot be trusted to tell.
        At the same isolation level: its end offsets are where the reader can get to."""
        return AIOKafkaConsumer(**self._kafka, group_id=None, enable_auto_commit=False,
                                isolation_level=self._settings.isolation_level,
                                request_timeout_ms=METADATA_TIMEOUT_MS)  # fmt: skip

    def _start_task(self, work: Coroutine[None, None, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._on_task_done)
        self._tasks.append(task)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            self.failed = task.exception()
            logger.error("%s stopped", task.get_name(), exc_info=self.failed)

    async def stop(self) -> None:
        for timer in self._lingering.values():
            timer.cancel()
        if self._round is not None:
            self._round.cancel()
        for task in tuple(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._consumer.stop()
        await self._probe.stop()
        await self._client.close()

    async def _run(self) -> None:
        await self._connect()
        self._start_task(self._watch_metadata(), "kafka-metadata")
        self._start_task(self._guard(), "kafka-watchdog")
        self._reader = self._start_task(self._read(), "kafka-reader")

    async def _read(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=BATCH_RECORDS)
            except OffsetOutOfRangeError as error:
                await self._out_of_range(error.args[0])
                continue
            # From here to the next getmany no await: a replacement cancels the reader only between batches.
            by_topic: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
            for partition, records in batch.items():
                by_topic[partition.topic].extend(records)
            fetched = time.time()
            for topic, records in by_topic.items():
                channel = self._hub.channels.get(topic)
                if channel is None:  # fetched before its topic was deleted: not the channel's any more
                    continue
                channel.stats.records_consumed += len(records)
                self._hub.latency.observe("fetched", records, fetched)
                self._schemas.publish(channel, records)
            self._pause_waiting()

    def _pause_waiting(self) -> None:
        """Read no further in topics whose records wait for the registry; read again those that waited.
        (Only the partitions paused here: _out_of_range pauses others for the watcher.)"""
        consumer, waiting = self._consumer, self._schemas.waiting
        assigned = consumer.assignment()
        paused = {tp for tp in assigned if tp.topic in waiting}
        consumer.pause(*paused)
        consumer.resume(*((self._waiting_partitions - paused) & assigned))
        self._waiting_partitions = paused

    async def _out_of_range(self, positions: Mapping[TopicPartition, int]) -> None:
        """A fetch asked for offsets a partition does not have. Below its log
        start (retention went past the reader): on from the first offset kept.
        Past its end (the topic was deleted and created again, or the log was
        truncated): that partition waits for the watcher, asked to look now."""
        consumer = self._consumer
        try:
            starts = await consumer.beginning_offsets(list(positions))
        except KafkaError:  # the topic may be gone: the watcher tells
            starts = {}
        for tp, offset in positions.items():
            if tp not in consumer.assignment():  # dropped by the watcher meanwhile
                continue
            if tp in starts and offset < starts[tp]:
                logger.warning("%s[%d]: records from %d to %d were deleted before they were read",
                               tp.topic, tp.partition, offset, starts[tp])  # fmt: skip
                consumer.seek(tp, starts[tp])
            else:
                logger.warning("%s[%d] ends before offset %d: the topic may have been created again",
                               tp.topic, tp.partition, offset)  # fmt: skip
                consumer.pause(tp)
                self._past_end.add(tp)
                self._look_now.set()

    async def _start_client(self, start: Callable[[], Awaitable[object]]) -> None:
        """Start an aiokafka client, retrying while Kafka cannot be reached."""
        protocol, login = self._settings.kafka_security_protocol, ""
        if protocol.startswith("SASL_"):
            login = f" as {self._settings.kafka_sasl_username!r} ({self._settings.kafka_sasl_mechanism})"
        delay = RETRY_SECONDS
        while True:
            try:
                await start()
                return
            except KafkaError as error:
                # aiokafka logs the cause just before (refused connection, TLS, SASL authentication)
                logger.warning("Kafka at %s not reachable yet over %s%s, next try in %.0f s: %s",
                               self._kafka["bootstrap_servers"], protocol, login, delay, error)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(2 * delay, MAX_RETRY_SECONDS)

    async def _connect(self) -> None:
        """Start the clients and make the first assignment (the bridge may start before the broker)."""
        for start in (self._client.bootstrap, self._consumer.start, self._probe.start):
            await self._start_client(start)
        while not self.assigned:
            await self._refresh()
            if not self.assigned:
                await asyncio.sleep(RETRY_SECONDS)

    async def _guard(self) -> None:
        detector = StallDetector(self._settings.stall_seconds)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._settings.stall_seconds / LOOKS_PER_STALL_BOUND)
            # a paused partition (its topic waits for the registry) does not move, and is not stalled
            assigned = list(self._consumer.assignment() - self._consumer.paused())
            try:
                ends = await self._probe.end_offsets(assigned)
                positions = {tp: await self._consumer.position(tp) for tp in assigned}
            except KafkaError:
                detector.reset()  # Kafka unreachable is not a stall; the reader's own retries deal with it
                await self._renew_probe()
                continue
            except IllegalStateError:
                continue  # a topic was released meanwhile: look again at the new assignment
            if detector.stalled(positions, ends, loop.time()):
                behind = sum(ends[tp] - positions[tp] for tp in assigned)
                logger.warning("Kafka consumer stalled: %d record(s) waiting, no progress for %.0f s; replacing it",
                               behind, self._settings.stall_seconds)  # fmt: skip
                await self._replace_consumer()
                detector.reset()

    async def _renew_probe(self) -> None:
        """A new probe for the next look. aiokafka gives up on the answer at the
        same moment the connection would time out, and when giving up comes
        first the connection stays open: a silenced one would fail every look."""
        stale, self._probe = self._probe, self._new_probe()
        await stale.stop()
        await self._start_client(self._probe.start)

    async def _replace_consumer(self) -> None:
        async with self._assigning:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            stalled, self._consumer = self._consumer, self._new_consumer()
            await stalled.stop()
            await self._start_client(self._consumer.start)
            self._apply_assignment()
            self.consumer_restarts += 1
            self._reader = self._start_task(self._read(), "kafka-reader")

    async def _watch_metadata(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._look_now.wait(), self._settings.metadata_interval)
                asked = True
            except TimeoutError:
                asked = False
            self._look_now.clear()
            await self._refresh()
            if not asked:
                # Partitions paused past their end (_out_of_range) whose topic is still
                # the same one (a truncated log): fetched again once per interval.
                self._consumer.resume(*(self._past_end & self._consumer.assignment()))
                self._past_end.clear()

    async def _refresh(self) -> None:
        try:
            topics = {name: info for name, info in (await self._describe_topics()).items()
                      if self._settings.serves(name)}  # fmt: skip
            self.leaders.observe({name: info.leaders for name, info in topics.items()})
            async with self._assigning:
                self._drop_deleted(topics)
                await self._assign({name: info for name, info in topics.items() if info.error_code == 0})
        except KafkaError as error:
            if self.reachable:
                logger.warning("Kafka metadata request failed: %s", error)
            self.reachable = False
            return
        if not self.reachable:
            logger.info("Kafka reachable; serving %d topic(s)", len(self.partitions))
        self.reachable = True
        self.assigned = True

    async def _describe_topics(self) -> dict[str, TopicInfo]:
        loop = asyncio.get_running_loop()
        deadline, tries = loop.time() + METADATA_TIMEOUT_MS / 1000, 1
        while True:
            try:
                return await describe_topics(self._client)
            except KafkaError:
                if tries == METADATA_TRIES or loop.time() > deadline:
                    raise
                tries += 1

    def _drop_deleted(self, topics: Mapping[str, TopicInfo]) -> None:
        """Drop the channels of topics that Kafka no longer has, or has under
        another topic id; no await, as for every change of assignment."""
        gone = [topic for topic in self._hub.channels
                if topic not in topics or topics[topic].topic_id != self._read_ids[topic]]  # fmt: skip
        if not gone:
            return
        for topic in gone:
            self._hub.delete_topic(topic)
            del self._read_ids[topic]
            again = " and created again" if topic in topics else ""
            logger.warning("topic %s was deleted%s: its streams were told and ended", topic, again)
        self._apply_assignment()

    async def _assign(self, topics: Mapping[str, TopicInfo]) -> None:
        """Know every served topic's partitions; of the topics read, assign
        the new partitions from their first offset, keeping the exact position
        of those already read."""
        self.partitions = {topic: info.partitions for topic, info in topics.items()}
        self._topic_ids = {topic: info.topic_id for topic, info in topics.items()}
        fresh: list[TopicPartition] = []
        for topic, channel in self._hub.channels.items():
            count = self.partitions.get(topic, 0)
            fresh.extend(TopicPartition(topic, partition) for partition in range(len(channel.position), count))
        if not fresh:
            return
        # New partitions of a topic read hold only new records.
        starts = await self._consumer.beginning_offsets(fresh)
        # From here on no await: the reader must see partitions, positions and channels change together.
        added: dict[str, list[int]] = defaultdict(list)
        for tp in fresh:
            added[tp.topic].append(starts[tp])
        for topic, offsets in added.items():
            self._hub.channels[topic].add_partitions(offsets)
            logger.info("reading %s: %d new partition(s) from offsets %s", topic, len(offsets), offsets)
        self._apply_assignment()

    def _apply_assignment(self) -> None:
        """Assign exactly the partitions of the topics read, each at its
        channel's position. aiokafka's assign() replaces the whole assignment
        and forgets every position (records fetched ahead are dropped): each
        partition is seeked back to the next record its channel has not
        published, so no record of any topic is skipped or repeated."""
        positions = {TopicPartition(topic, partition): offset for topic, channel in self._hub.channels.items()
                     for partition, offset in enumerate(channel.position)}  # fmt: skip
        self._consumer.assign(list(positions))
        for tp, offset in positions.items():
            self._consumer.seek(tp, offset)

    # -- watching ----------------------------------------------------------------

    async def watch(self, topics: Sequence[str]) -> None:
        """Count a stream on ``topics`` and read those not read yet, from
        their live end. Raises TimeoutError or KafkaError when Kafka does not
        answer in time; the stream is not counted then."""
        for topic in topics:
            self.watchers[topic] = self.watchers.get(topic, 0) + 1
            if (lingering := self._lingering.pop(topic, None)) is not None:
                lingering.cancel()
            self._hub.mark_watched(topic, now=True)
        try:
            async with asyncio.timeout(WATCH_TIMEOUT_SECONDS):
                while any(topic not in self._hub.channels and topic in self.partitions for topic in topics):
                    # Shielded: a stream that gives up does not cancel the round the others wait for.
                    await asyncio.shield(self._reading_round())
        except BaseException:
            self.unwatch(topics)
            raise

    def _reading_round(self) -> asyncio.Task[None]:
        """The round that reads every watched topic not read yet, shared by all
        the streams waiting for it (a reconnect storm over many topics makes a
        few rounds, not one per topic); a new one once the last has ended."""
        if self._round is None or self._round.done():
            self._round = asyncio.create_task(self._read_from_live_end(), name="kafka-watch")
            # Its KafkaError reaches the streams awaiting it; none may be left to hear of it.
            self._round.add_done_callback(lambda done: done.cancelled() or done.exception())
        return self._round

    async def _read_from_live_end(self) -> None:
        async with self._assigning:
            unread = {
                t: self.partitions[t] for t in self.watchers if t not in self._hub.channels and t in self.partitions
            }
            fresh = [TopicPartition(topic, p) for topic, count in unread.items() for p in range(count)]
            ends = await self._consumer.end_offsets(fresh) if fresh else {}
            # From here on no await: channels and assignment change together.
            self._open_channels(unread, ends)
            # Topics whose streams gave up meanwhile (Kafka slower than WATCH_TIMEOUT_SECONDS) are read
            # all the same, for the linger: their browsers' retries find them read, instead of
            # starting a round that is given up again.
            for topic in unread:
                if topic not in self.watchers:
                    self._linger(topic)

    def _open_channels(self, topics: Mapping[str, int], ends: Mapping[TopicPartition, int]) -> None:
        """Read ``topics`` (their partition counts) from ``ends``."""
        if not topics:
            return
        for topic, count in topics.items():
            start = [ends[TopicPartition(topic, partition)] for partition in range(count)]
            self._read_ids[topic] = topic_id = self._topic_ids[topic]
            self._hub.open_channel(topic, start, topic_tag(topic_id))
            self._hub.mark_watched(topic, now=True)
            logger.info("reading %s from offsets %s: it is watched", topic, start)
        self._apply_assignment()
        self.assignments += len(topics)

    def unwatch(self, topics: Sequence[str]) -> None:
        """A stream on ``topics`` ended: a topic none watches any more is released after the linger."""
        for topic in topics:
            self.watchers[topic] -= 1
            if self.watchers[topic]:
                continue
            del self.watchers[topic]
            self._hub.mark_watched(topic, now=False)
            self._linger(topic)

    def _linger(self, topic: str) -> None:
        """Release ``topic`` after the linger (from now), unless a stream watches it again before."""
        if (lingering := self._lingering.pop(topic, None)) is not None:
            lingering.cancel()
        loop = asyncio.get_running_loop()
        self._lingering[topic] = loop.call_later(self._settings.linger_seconds, self._linger_ended, topic)

    def _linger_ended(self, topic: str) -> None:
        del self._lingering[topic]
        self._start_task(self.release(topic), "kafka-release")

    async def release(self, topic: str) -> None:
        """Stop reading ``topic``, unless a stream came for it meanwhile: unassign it and drop its channel."""
        async with self._assigning:
            if topic in self.watchers or topic in self._lingering or self._hub.drop_channel(topic) is None:
                return
            self._apply_assignment()
            self.releases += 1
            logger.info("released %s: unwatched for %.0f s", topic, self._settings.linger_seconds)
