// Reads the fleet's Avro data with Apache Avro's Java reference implementation, so that the
// format is checked by code the fleet did not write. Runs as a single-file program:
//
//   java -cp "$INTEROP_JAVA_CLASSPATH" AvroInterop.java fingerprints FILE...
//       prints "FILE<TAB>fingerprint<TAB>canonical form" per schema file:
//       SchemaNormalization.parsingFingerprint64 as the 8 little-endian bytes of the
//       single-object header in hex, and SchemaNormalization.toParsingForm
//   java -cp "$INTEROP_JAVA_CLASSPATH" AvroInterop.java decode BROKERS SCHEMAS_TOPIC SINCE_MS TOPIC...
//       loads every schema of SCHEMAS_TOPIC into a SchemaStore, then decodes every record of each
//       TOPIC written at or after SINCE_MS (Unix milliseconds; 0 for all) with BinaryMessageDecoder
//       (single-object encoding), finding the writer schema by the fingerprint in the record's
//       header and resolving it to the newest schema of the topic (a TOPIC named PREFIX<topic> or
//       <topic>.dlq reads as <topic>); prints one line per topic
//       ("TOPIC records=N decoded=N failed=N") and exits 1 if any record failed
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.SchemaStore;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class AvroInterop {
  public static void main(String[] args) throws Exception {
    if (args.length >= 2 && args[0].equals("fingerprints")) {
      for (int i = 1; i < args.length; i++) {
        Schema s = new Schema.Parser().parse(new File(args[i]));
        System.out.println(args[i] + "\t" + hexLE(SchemaNormalization.parsingFingerprint64(s))
            + "\t" + SchemaNormalization.toParsingForm(s));
      }
      return;
    }
    if (args.length >= 5 && args[0].equals("decode")) {
      System.exit(decode(args[1], args[2], Long.parseLong(args[3]), Arrays.copyOfRange(args, 4, args.length)));
    }
    System.err.println("usage: AvroInterop fingerprints FILE... | decode BROKERS SCHEMAS_TOPIC SINCE_MS TOPIC...");
    System.exit(2);
  }

  static String hexLE(long fp) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < 8; i++) {
      b.append(String.format("%02x", (fp >>> (8 * i)) & 0xff));
    }
    return b.toString();
  }

  static int decode(String brokers, String schemasTopic, long sinceMs, String[] topics) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
      // The schemas topic: key = fingerprint (hex of the header bytes), value = schema JSON,
      // header schema.topic = the topic whose events it writes.
      SchemaStore.Cache store = new SchemaStore.Cache();
      Map<String, Schema> newestByTopic = new HashMap<>();
      Map<String, Integer> versionByTopic = new HashMap<>();
      Set<String> schemas = new HashSet<>();
      for (ConsumerRecord<byte[], byte[]> r : readAll(consumer, schemasTopic)) {
        Schema s = new Schema.Parser().parse(new String(r.value(), StandardCharsets.UTF_8));
        String key = new String(r.key(), StandardCharsets.UTF_8);
        String fp = hexLE(SchemaNormalization.parsingFingerprint64(s));
        if (!fp.equals(key)) {
          System.err.printf("schema keyed %s has fingerprint %s%n", key, fp);
          return 1;
        }
        store.addSchema(s);
        schemas.add(key);
        String topic = header(r, "schema.topic");
        int version = Integer.parseInt(header(r, "schema.version"));
        if (version > versionByTopic.getOrDefault(topic, 0)) {
          versionByTopic.put(topic, version);
          newestByTopic.put(topic, s);
        }
      }
      System.out.printf("%s schemas=%d%n", schemasTopic, schemas.size());
      int failed = 0;
      for (String topic : topics) {
        String source = topic.endsWith(".dlq") ? topic.substring(0, topic.length() - 4) : topic;
        Schema reader = null;
        for (Map.Entry<String, Schema> e : newestByTopic.entrySet()) {
          if (source.endsWith(e.getKey())) {
            reader = e.getValue();
          }
        }
        if (reader == null) {
          System.err.printf("no schema for topic %s in %s%n", source, schemasTopic);
          return 1;
        }
        BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(GenericData.get(), reader, store);
        int records = 0, ok = 0, bad = 0;
        for (ConsumerRecord<byte[], byte[]> r : readAll(consumer, topic)) {
          if (r.timestamp() < sinceMs) {
            continue;
          }
          records++;
          try {
            GenericRecord rec = decoder.decode(r.value());
            if (rec.get("event_id") == null) {
              throw new IllegalStateException("no event_id");
            }
            ok++;
          } catch (Exception e) {
            bad++;
            if (bad <= 5) {
              System.err.printf("%s partition %d offset %d: %s%n", topic, r.partition(), r.offset(), e);
            }
          }
        }
        System.out.printf("%s records=%d decoded=%d failed=%d%n", topic, records, ok, bad);
        failed += bad;
      }
      return failed == 0 ? 0 : 1;
    }
  }

  static String header(ConsumerRecord<byte[], byte[]> r, String name) {
    Header h = r.headers().lastHeader(name);
    return h == null ? "" : new String(h.value(), StandardCharsets.UTF_8);
  }

  // readAll returns every record of topic from the beginning to the end offsets of now.
  static List<ConsumerRecord<byte[], byte[]>> readAll(KafkaConsumer<byte[], byte[]> consumer, String topic) {
    List<TopicPartition> parts = new ArrayList<>();
    if (!consumer.listTopics(Duration.ofSeconds(30)).containsKey(topic)) {
      return List.of(); // a dead-letter topic that was never needed
    }
    for (PartitionInfo p : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
      parts.add(new TopicPartition(topic, p.partition()));
    }
    consumer.assign(parts);
    consumer.seekToBeginning(parts);
    Map<TopicPartition, Long> end = consumer.endOffsets(parts, Duration.ofSeconds(30));
    List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
    long deadline = System.currentTimeMillis() + 120_000;
    while (!reached(consumer, end)) {
      if (System.currentTimeMillis() > deadline) {
        throw new IllegalStateException("timed out reading " + topic);
      }
      for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
        if (r.offset() < end.get(new TopicPartition(r.topic(), r.partition()))) {
          out.add(r);
        }
      }
    }
    return out;
  }

  static boolean reached(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> end) {
    for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
      if (consumer.position(e.getKey()) < e.getValue()) {
        return false;
      }
    }
    return true;
  }
}
