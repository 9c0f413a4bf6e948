// The Java kafka-clients side of the tests of `pubsub serve` (see tests/serve/java_client.py).
//
//   ClientProbe script BOOTSTRAP TOPIC GROUP [DUMP:PARTITIONS...]
//       the script of tests/serve/client_script.py; prints its observations as one JSON object
//   ClientProbe member BOOTSTRAP TOPIC GROUP [ASSIGNOR]
//       a group member: {"assigned": [partitions]} after each rebalance, {"p": P, "o": OFFSET}
//       per record, one JSON line each; commits (with metadata) what it read after each poll;
//       ASSIGNOR is a partition.assignment.strategy (default: the client's)
//
// The producers keep Java's default configuration: idempotent (enable.idempotence=true).

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.Future;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class ClientProbe {
    // The same constants as tests/serve/client_script.py.
    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};
    static final int PER_CODEC = 10;
    static final long BASE_TIMESTAMP = 1_700_000_000_000L;
    static final int BATCH_START = PER_CODEC;
    static final int MIDDLE = 2 * PER_CODEC + PER_CODEC / 2;
    static final int TIME_PROBE = 15;
    static final long COMMIT_OFFSET = 17;
    static final String COMMIT_METADATA = "meta data";
    static final byte[] AFTER_END_VALUE = "after the end".getBytes(StandardCharsets.UTF_8);
    static final Duration POLL = Duration.ofMillis(500);
    static final Duration TIMEOUT = Duration.ofSeconds(60);

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        String bootstrap = args[1];
        String topic = args[2];
        String group = args[3];
        if (mode.equals("script")) {
            List<String> dumps = List.of(args).subList(4, args.length);
            System.out.println(script(bootstrap, topic, group, dumps));
        } else if (mode.equals("member")) {
            member(bootstrap, topic, group, args.length > 4 ? args[4] : null);
        } else {
            throw new IllegalArgumentException("unknown mode " + mode);
        }
    }

    // -- the record of the script ---------------------------------------------------------

    static byte[] key(int c, int i) {
        return i == 4 ? null : utf8(CODECS[c] + "-k" + (i % 3));
    }

    static byte[] value(int c, int i) {
        if (i == 7) {
            return null;
        }
        if (i == 2) {
            return utf8("é€ " + CODECS[c] + " ✓");
        }
        byte[] head = utf8(CODECS[c] + "-" + i + "-");
        byte[] tail = {0, (byte) 255, (byte) i, 10, 34, 92};
        byte[] out = new byte[head.length + tail.length];
        System.arraycopy(head, 0, out, 0, head.length);
        System.arraycopy(tail, 0, out, head.length, tail.length);
        return out;
    }

    static List<Header> headers(int c, int i) {
        return List.of(
                new RecordHeader("codec", utf8(CODECS[c])),
                new RecordHeader("i", utf8(Integer.toString(i))),
                new RecordHeader("dup", utf8("1")),
                new RecordHeader("dup", new byte[] {(byte) 0xff, 0}),
                new RecordHeader("nul", (byte[]) null));
    }

    // -- clients ----------------------------------------------------------------------------

    static KafkaProducer<byte[], byte[]> producer(String bootstrap, String codec) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("acks", "all");
        p.put("compression.type", codec);
        p.put("linger.ms", "200"); // the ten records of a codec go in one batch
        p.put("request.timeout.ms", "60000");
        p.put("delivery.timeout.ms", "120000");
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String group, String reset) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.auto.commit", "false");
        p.put("request.timeout.ms", "60000");
        p.put("default.api.timeout.ms", "60000");
        if (group != null) {
            p.put("group.id", group);
        }
        if (reset != null) {
            p.put("auto.offset.reset", reset);
        }
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    static List<ConsumerRecord<byte[], byte[]>> readUntil(
            KafkaConsumer<byte[], byte[]> consumer, TopicPartition tp, long end) {
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        while (consumer.position(tp, TIMEOUT) < end) {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(POLL)) {
                out.add(r);
            }
        }
        return out;
    }

    static String offsets(List<ConsumerRecord<byte[], byte[]>> records) {
        List<String> out = new ArrayList<>();
        for (ConsumerRecord<byte[], byte[]> r : records) {
            out.add(Long.toString(r.offset()));
        }
        return array(out);
    }

    static String script(String bootstrap, String topic, String group, List<String> dumps)
            throws Exception {
        Map<String, String> out = new java.util.LinkedHashMap<>();
        TopicPartition tp = new TopicPartition(topic, 0);
        List<String> produced = new ArrayList<>();
        List<String> acked = new ArrayList<>();
        for (int c = 0; c < CODECS.length; c++) {
            try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap, CODECS[c])) {
                List<Future<RecordMetadata>> futures = new ArrayList<>();
                for (int i = 0; i < PER_CODEC; i++) {
                    long timestamp = BASE_TIMESTAMP + 1000L * (c * PER_CODEC + i);
                    futures.add(producer.send(new ProducerRecord<>(
                            topic, 0, timestamp, key(c, i), value(c, i), headers(c, i))));
                }
                producer.flush();
                for (Future<RecordMetadata> f : futures) {
                    RecordMetadata md = f.get();
                    produced.add(array(List.of(
                            Integer.toString(md.partition()), Long.toString(md.offset()))));
                    acked.add(Long.toString(md.timestamp()));
                }
            }
        }
        out.put("produced", array(produced));
        out.put("acked_timestamps", array(acked));

        try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, null, null)) {
            consumer.assign(List.of(tp));
            long end = consumer.endOffsets(List.of(tp), TIMEOUT).get(tp);
            consumer.seekToBeginning(List.of(tp));
            List<String> records = new ArrayList<>();
            for (ConsumerRecord<byte[], byte[]> r : readUntil(consumer, tp, end)) {
                records.add(envelope(r));
            }
            out.put("beginning", array(records));
            consumer.seek(tp, BATCH_START);
            out.put("from_batch_start", offsets(readUntil(consumer, tp, end)));
            consumer.seek(tp, MIDDLE);
            out.put("from_middle", offsets(readUntil(consumer, tp, end)));
            List<String> times = new ArrayList<>();
            for (long when : new long[] {BASE_TIMESTAMP + 1000L * TIME_PROBE, 2 * BASE_TIMESTAMP}) {
                OffsetAndTimestamp at = consumer.offsetsForTimes(Map.of(tp, when), TIMEOUT).get(tp);
                times.add(at == null ? "null" : Long.toString(at.offset()));
            }
            out.put("times", array(times));
        }

        for (String reset : new String[] {"earliest", "latest"}) {
            try (KafkaConsumer<byte[], byte[]> fresh = consumer(bootstrap, group + "-" + reset, reset)) {
                fresh.assign(List.of(tp));
                out.put(reset, Long.toString(fresh.position(tp, TIMEOUT)));
            }
        }

        try (KafkaConsumer<byte[], byte[]> tail = consumer(bootstrap, null, null)) {
            tail.assign(List.of(tp));
            tail.seekToEnd(List.of(tp));
            long position = tail.position(tp, TIMEOUT);
            try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap, "none")) {
                producer.send(new ProducerRecord<>(topic, 0, null, AFTER_END_VALUE)).get();
            }
            ConsumerRecord<byte[], byte[]> after = readUntil(tail, tp, position + 1).get(0);
            out.put("end", array(List.of(
                    Long.toString(position), Long.toString(after.offset()), bytes(after.value()))));
        }

        try (KafkaConsumer<byte[], byte[]> committer = consumer(bootstrap, group, null)) {
            committer.assign(List.of(tp));
            committer.commitSync(Map.of(tp, new OffsetAndMetadata(COMMIT_OFFSET, COMMIT_METADATA)));
        }
        try (KafkaConsumer<byte[], byte[]> reader = consumer(bootstrap, group, null)) {
            OffsetAndMetadata committed = reader.committed(Set.of(tp), TIMEOUT).get(tp);
            out.put("committed", array(List.of(
                    Long.toString(committed.offset()), string(committed.metadata()))));
        }

        if (!dumps.isEmpty()) {
            List<String> records = new ArrayList<>();
            try (KafkaConsumer<byte[], byte[]> dumper = consumer(bootstrap, null, null)) {
                for (String dump : dumps) {
                    int colon = dump.lastIndexOf(':');
                    String name = dump.substring(0, colon);
                    int count = Integer.parseInt(dump.substring(colon + 1));
                    for (int p = 0; p < count; p++) {
                        TopicPartition part = new TopicPartition(name, p);
                        dumper.assign(List.of(part));
                        long end = dumper.endOffsets(List.of(part), TIMEOUT).get(part);
                        dumper.seekToBeginning(List.of(part));
                        for (ConsumerRecord<byte[], byte[]> r : readUntil(dumper, part, end)) {
                            records.add(envelope(r));
                        }
                    }
                }
            }
            out.put("dump", array(records));
        }

        List<String> fields = new ArrayList<>();
        for (Map.Entry<String, String> e : out.entrySet()) {
            fields.add(string(e.getKey()) + ":" + e.getValue());
        }
        return "{" + String.join(",", fields) + "}";
    }

    static void member(String bootstrap, String topic, String group, String assignor) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("session.timeout.ms", "3000");
        p.put("heartbeat.interval.ms", "300");
        p.put("max.poll.records", "20");
        if (assignor != null) {
            p.put("partition.assignment.strategy", assignor);
        }
        String tag = "java member " + ProcessHandle.current().pid();
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> revoked) {}

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> assigned) {
                    Set<Integer> now = new TreeSet<>();
                    for (TopicPartition tp : consumer.assignment()) {
                        now.add(tp.partition());
                    }
                    List<String> parts = new ArrayList<>();
                    for (int n : now) {
                        parts.add(Integer.toString(n));
                    }
                    say("{\"assigned\":" + array(parts) + "}");
                }
            });
            // What was read and not committed yet: a commit refused during a rebalance is
            // tried again after the next poll, for the partitions the member still owns.
            Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
            while (true) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    say("{\"p\":" + r.partition() + ",\"o\":" + r.offset() + "}");
                    pending.put(new TopicPartition(r.topic(), r.partition()),
                            new OffsetAndMetadata(r.offset() + 1, tag));
                }
                pending.keySet().retainAll(consumer.assignment());
                if (!pending.isEmpty()) {
                    try {
                        consumer.commitSync(pending);
                        pending.clear();
                    } catch (RebalanceInProgressException | CommitFailedException e) {
                        // the next poll takes part in the rebalance
                    }
                }
            }
        }
    }

    static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    // -- JSON, the envelope's way -----------------------------------------------------------

    static String envelope(ConsumerRecord<byte[], byte[]> r) {
        List<String> headers = new ArrayList<>();
        for (Header h : r.headers()) {
            headers.add(array(List.of(string(h.key()), bytes(h.value()))));
        }
        return "{\"topic\":" + string(r.topic())
                + ",\"partition\":" + r.partition()
                + ",\"offset\":" + r.offset()
                + ",\"timestamp\":" + r.timestamp()
                + ",\"key\":" + bytes(r.key())
                + ",\"value\":" + bytes(r.value())
                + ",\"headers\":" + array(headers) + "}";
    }

    /** Bytes as the JSON envelope writes them: a UTF-8 string, null, or {"base64": ...}. */
    static String bytes(byte[] data) {
        if (data == null) {
            return "null";
        }
        try {
            String text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(data))
                    .toString();
            return string(text);
        } catch (CharacterCodingException e) {
            return "{\"base64\":" + string(Base64.getEncoder().encodeToString(data)) + "}";
        }
    }

    static String string(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            if (ch == '"' || ch == '\\') {
                b.append('\\').append(ch);
            } else if (ch < 0x20 || ch > 0x7e) {
                b.append(String.format("\\u%04x", (int) ch));
            } else {
                b.append(ch);
            }
        }
        return b.append('"').toString();
    }

    static String array(List<String> items) {
        return "[" + String.join(",", items) + "]";
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }
}
