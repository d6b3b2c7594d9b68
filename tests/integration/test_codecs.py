"""Compressed input from a Kafka client other than ours, and record batches the worker cannot read.

The batches are produced by the Apache Kafka Java client (kafka-clients from the broker's own
jars, run as a single-file Java program) with compression.type gzip, snappy, lz4 and zstd; the
broker's DumpLogSegments tool confirms each codec is really in the log. Without a JDK (no
compiler for the single-file program) aiokafka produces them instead, and the test says so.
One worker reads all four codecs (one parametrized assertion per codec).

A batch the worker cannot read is provoked twice against the real broker: a codec library
missing in the worker (cramjam made unimportable in that process only, through a
sitecustomize on its PYTHONPATH) and a record batch corrupted on the broker's disk (one byte
of a record flipped in the segment file: the batch's CRC no longer matches). The worker must
stay up, store everything else, hold the partition at the bad batch (nothing after it is
skipped, nothing before it lost), and say so in its log, /metrics and /health.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from finsent.services import ROOT, WorkerProcess, wait_for, worker_env
from stream.simulate import feed
from tests.integration.conftest import FAST_DETECTOR, Stack

pytestmark = pytest.mark.slow
CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 150

JAVA_PRODUCER = r"""
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** args: bootstrap, then codec=topic=file ...; each line of a file is "key<TAB>value". */
public class CodecProducer {
    public static void main(String[] args) throws Exception {
        for (int i = 1; i < args.length; i++) {
            String[] spec = args[i].split("=", 3);
            Properties p = new Properties();
            p.put("bootstrap.servers", args[0]);
            p.put("compression.type", spec[0]);
            p.put("linger.ms", "50");
            p.put("batch.size", "262144");
            p.put("acks", "all");
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            try (KafkaProducer<byte[], byte[]> producer =
                     new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
                for (String line : Files.readAllLines(Path.of(spec[2]), StandardCharsets.UTF_8)) {
                    int tab = line.indexOf('\t');
                    sent.add(producer.send(new ProducerRecord<>(spec[1],
                        line.substring(0, tab).getBytes(StandardCharsets.UTF_8),
                        line.substring(tab + 1).getBytes(StandardCharsets.UTF_8))));
                }
                producer.flush();
                for (Future<RecordMetadata> f : sent) f.get();  // any failure fails the run
            }
            System.out.println(spec[0] + " " + sent.size());
        }
    }
}
"""


def kafka_lib() -> Path:
    """The broker's jars, where scripts/kafka.sh keeps them."""
    version = re.search(r"<kafka.version>(.+)</kafka.version>", (ROOT / "scripts/kafka/pom.xml").read_text())[1]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("FINSENT_KAFKA_LIB", cache / "finsent" / f"kafka-{version}"))


def java_can_compile() -> bool:
    java = shutil.which("java")
    if not java:
        return False
    out = subprocess.run([java, "--list-modules"], capture_output=True, text=True, timeout=60).stdout
    return "jdk.compiler" in out


def java(*args: str, timeout: float = 180) -> str:
    log4j = ROOT / "scripts/kafka/log4j2.properties"
    r = subprocess.run(["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{kafka_lib()}/*", *args],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def events(codec: str, n: int) -> list[dict]:
    return list(feed(n, seed=CODECS.index(codec) + 20, prefix=f"{codec}-"))


def produce_with_java(tmp: Path, bootstrap: str, topic: str) -> None:
    src = tmp / "CodecProducer.java"
    src.write_text(JAVA_PRODUCER)
    specs = []
    for codec in CODECS:
        f = tmp / f"{codec}.tsv"
        f.write_text("".join(f"{e['id']}\t{orjson.dumps(e).decode()}\n" for e in events(codec, PER_CODEC)))
        specs.append(f"{codec}={topic}={f}")
    out = java(str(src), bootstrap, *specs)
    assert out.split() == [w for c in CODECS for w in (c, str(PER_CODEC))], out


async def produce_with_aiokafka(bootstrap: str, topic: str) -> None:
    for codec in CODECS:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=50)
        await producer.start()
        try:
            for e in events(codec, PER_CODEC):
                await producer.send(topic, orjson.dumps(e), key=e["id"].encode())
        finally:
            await producer.stop()


def codecs_in_log(kafka, topic: str) -> set[str]:
    """The compression of every batch the broker holds for `topic` (DumpLogSegments)."""
    files = sorted(str(f) for f in (kafka.dir / "data").glob(f"{topic}-*/*.log"))
    return set(re.findall(r"compresscodec: (\w+)", java("kafka.tools.DumpLogSegments", "--files", ",".join(files))))


@pytest.fixture(scope="module")
def codec_stack(kafka, postgres, tmp_path_factory):
    """One worker, the four codecs produced before it starts."""
    tmp = tmp_path_factory.mktemp("codecs")
    s = Stack(kafka, postgres, tmp, **FAST_DETECTOR)
    topic = s.settings.topic_news
    if java_can_compile():
        produce_with_java(tmp, kafka.bootstrap, topic)
        s.producer = "Apache Kafka Java client"
    else:
        asyncio.run(produce_with_aiokafka(kafka.bootstrap, topic))
        s.producer = "aiokafka (no JDK here for the Java client)"
    print(f"codec batches produced by: {s.producer}")
    s.log_codecs = codecs_in_log(kafka, topic)
    s.start_worker()
    s.wait_rows(PER_CODEC * len(CODECS))
    yield s
    s.close()


@pytest.mark.parametrize("codec", CODECS)
def test_batches_compressed_with_each_codec_are_read(codec_stack, codec):
    assert codec in codec_stack.log_codecs  # the broker really holds batches in that codec
    (n,), = codec_stack.sql("SELECT count(*) FROM scored_event WHERE id LIKE %s", f"{codec}-%")
    assert n == PER_CODEC
    assert codec_stack.workers[0].alive()


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None


async def send_to(bootstrap: str, topic: str, partition: int, evs: list[dict], codec: str | None = None) -> None:
    """Each event its own batch (send_and_wait), to one partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec)
    await producer.start()
    try:
        for e in evs:
            await producer.send_and_wait(topic, orjson.dumps(e), key=e["id"].encode(), partition=partition)
    finally:
        await producer.stop()


def corrupt(kafka, topic: str, partition: int, marker: bytes) -> None:
    """Flip one byte of the record holding `marker` in the broker's segment file."""
    seg = next((kafka.dir / "data" / f"{topic}-{partition}").glob("*.log"))
    with open(seg, "r+b") as f:
        data = f.read()
        at = data.index(marker)
        f.seek(at)
        f.write(bytes([data[at] ^ 0x20]))
        f.flush()
        os.fsync(f.fileno())


def test_unreadable_batches_hold_their_partition_report_it_and_lose_nothing(kafka, postgres, tmp_path):
    s = Stack(kafka, postgres, tmp_path, stall_s=5, **FAST_DETECTOR)
    news = s.settings.topic_news
    try:
        evs = list(feed(60, seed=31, prefix="u-"))
        for e in evs:
            e["source"] = "wire-a"
        before, bad, after, lz4, other = evs[:10], evs[10], evs[11:20], evs[20:30], evs[30:]
        bad["text"] = "CORRUPTME " + bad["text"]
        asyncio.run(send_to(kafka.bootstrap, news, 0, before + [bad] + after))  # news/0: a corrupt batch
        asyncio.run(send_to(kafka.bootstrap, news, 1, lz4, codec="lz4"))  # news/1: lz4, a codec this worker lacks
        asyncio.run(send_to(kafka.bootstrap, news, 2, other))  # news/2: plain
        corrupt(kafka, news, 0, b"CORRUPTME")

        site = tmp_path / "nocramjam"
        site.mkdir()
        (site / "sitecustomize.py").write_text("import sys\nsys.modules['cramjam'] = None  # as if not installed\n")
        env = worker_env(kafka.bootstrap, s.url, **s.env_overrides)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
        w = WorkerProcess(env, tmp_path / "worker-nocodec.log").start()
        s.workers.append(w)

        s.wait_rows(len(before) + len(other))  # everything readable is stored, the prefix on news/0 included
        port = s.env_overrides["web_port"]

        def health():
            r = get(f"http://127.0.0.1:{port}/health")
            return r if r and r[0] == 503 and f"{news}/0" in r[1] and f"{news}/1" in r[1] else None

        status, body = wait_for(health, 60, what="/health reporting both held partitions")
        fetch = json.loads(body)["problems"]["fetch"]
        assert "CorruptRecordException" in fetch or "Invalid CRC" in fetch, fetch
        assert "UnsupportedCodecError" in fetch and "lz4" in fetch, fetch
        assert f"{news}/0 held at offset {len(before)}" in fetch  # exactly at the bad batch
        assert f"{news}/1 held at offset 0" in fetch
        # a held partition does not move: after FINSENT_STALL_S it is reported as stalled too
        stalled = wait_for(lambda: (r := get(f"http://127.0.0.1:{port}/health")) and "stalled" in json.loads(r[1])
                           ["problems"] and json.loads(r[1])["problems"]["stalled"], 60, what="the stall report")
        assert f"{news}/1 stuck at its start (nothing committed)" in stalled and f"{news}/0 stuck at offset {len(before)}" in stalled
        _, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert f'finsent_fetch_errors_total{{error="UnsupportedCodecError",topic="{news}"}}' in metrics
        assert "finsent_partitions_held 2.0" in metrics and "finsent_partitions_stalled 2.0" in metrics
        time.sleep(3)
        assert w.alive()
        ids = {r[0] for r in s.sql("SELECT id FROM scored_event")}
        assert ids == {e["id"] for e in before + other}  # nothing after the bad batch, nothing skipped
        assert "cannot read a record batch; partition held" in w.log_path.read_text()

        # the codec installed again (a worker without the block): the lz4 partition is read in full,
        # from where the group's committed offset was held; the corrupt batch still holds news/0
        w.stop()
        s.start_worker()
        s.wait_rows(len(before) + len(other) + len(lz4))
        time.sleep(2)
        (n,), = s.sql("SELECT count(*) FROM scored_event")
        assert n == len(before) + len(other) + len(lz4)
    finally:
        s.close()
