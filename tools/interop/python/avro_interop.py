"""Reads the fleet's Avro data with fastavro, an Avro implementation the fleet did not write.

    python avro_interop.py fingerprints FILE...
        prints "FILE<TAB>fingerprint" per schema file: the CRC-64-AVRO fingerprint of the
        Parsing Canonical Form, as the 8 little-endian bytes of the single-object header, in hex
    python avro_interop.py decode BROKERS SCHEMAS_TOPIC SINCE_MS TOPIC...
        loads every schema of SCHEMAS_TOPIC, then decodes every record of each TOPIC written at
        or after SINCE_MS (Unix milliseconds; 0 for all): the writer schema is found by the
        fingerprint in the record's single-object header and resolved to the topic's newest
        schema (a TOPIC named PREFIX<topic> or <topic>.dlq reads as <topic>); prints one line per
        topic ("TOPIC records=N decoded=N failed=N") and exits 1 if any record failed
"""

import io
import json
import sys

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form


def header_fingerprint(schema) -> str:
    """The fingerprint as the single-object header carries it: little-endian bytes, hex.

    fastavro's CRC-64-AVRO fingerprint is already that byte order."""
    return fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")


def cmd_fingerprints(paths) -> int:
    for path in paths:
        with open(path, encoding="utf-8") as f:
            schema = parse_schema(json.load(f), _write_hint=False)
        print(f"{path}\t{header_fingerprint(schema)}")
    return 0


def read_all(brokers, topic):
    """Every record of topic from the beginning to the end offsets of now."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "fleet-avro-interop",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        meta = consumer.list_topics(timeout=30)
        if topic not in meta.topics:
            return []  # a dead-letter topic that was never needed
        if meta.topics[topic].error is not None:
            raise RuntimeError(f"topic {topic}: {meta.topics[topic].error}")
        parts, ends = [], {}
        for p in meta.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                parts.append(TopicPartition(topic, p, low))
                ends[p] = high
        if not parts:
            return []
        consumer.assign(parts)
        out, done = [], set()
        while len(done) < len(ends):
            msg = consumer.poll(30)
            if msg is None:
                raise RuntimeError(f"timed out reading {topic}")
            if msg.error() is not None:
                if msg.error().code() == -191:  # partition EOF
                    continue
                raise RuntimeError(f"{topic}: {msg.error()}")
            if msg.offset() < ends[msg.partition()]:
                out.append(msg)
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return out
    finally:
        consumer.close()


def cmd_decode(brokers, schemas_topic, since_ms, topics) -> int:
    by_fp, newest = {}, {}
    for msg in read_all(brokers, schemas_topic):
        schema = parse_schema(json.loads(msg.value()), _write_hint=False)
        key, fp = msg.key().decode(), header_fingerprint(schema)
        if key != fp:
            print(f"schema keyed {key} has fingerprint {fp}", file=sys.stderr)
            return 1
        headers = {k: v.decode() for k, v in (msg.headers() or [])}
        by_fp[fp] = schema
        topic, version = headers["schema.topic"], int(headers["schema.version"])
        if version > newest.get(topic, (0, None))[0]:
            newest[topic] = (version, schema)
    print(f"{schemas_topic} schemas={len(by_fp)}")
    failed = 0
    for topic in topics:
        source = topic[: -len(".dlq")] if topic.endswith(".dlq") else topic
        matches = [name for name in newest if source.endswith(name)]
        if not matches:
            print(f"no schema for topic {source} in {schemas_topic}", file=sys.stderr)
            return 1
        reader = newest[max(matches, key=len)][1]
        records = ok = bad = 0
        for msg in read_all(brokers, topic):
            if msg.timestamp()[1] < since_ms:
                continue
            records += 1
            try:
                value = msg.value()
                if value[:2] != b"\xc3\x01":
                    raise ValueError(f"no single-object marker: {value[:2].hex()}")
                writer = by_fp.get(value[2:10].hex())
                if writer is None:
                    raise ValueError(f"unknown fingerprint {value[2:10].hex()}")
                body = io.BytesIO(value[10:])
                record = fastavro.schemaless_reader(body, writer, reader)
                if body.read(1):
                    raise ValueError("trailing bytes")
                if not record.get("event_id"):
                    raise ValueError("no event_id")
                ok += 1
            except Exception as e:  # every failure is counted and the first few shown
                bad += 1
                if bad <= 5:
                    print(f"{topic} partition {msg.partition()} offset {msg.offset()}: {e!r}", file=sys.stderr)
        print(f"{topic} records={records} decoded={ok} failed={bad}")
        failed += bad
    return 0 if failed == 0 else 1


def main(argv) -> int:
    if len(argv) >= 2 and argv[0] == "fingerprints":
        return cmd_fingerprints(argv[1:])
    if len(argv) >= 5 and argv[0] == "decode":
        return cmd_decode(argv[1], argv[2], int(argv[3]), argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
