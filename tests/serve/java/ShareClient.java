// A KafkaShareConsumer (kafka-clients) for the tests: explicit acknowledgement, decided by the
// record's value.
//
//   java -cp CLASSES:KAFKA_JARS/* ShareClient BOOTSTRAP GROUP TOPIC STOP_FILE [PAUSE_MS]
//
// Values name what to do: "a:..." accept, "x:..." reject, "r:..." release on the first
// delivery and accept on a later one. Each decision is one line on stdout,
// "DECISION PARTITION OFFSET DELIVERY_COUNT VALUE" (DECISION is ACCEPT, RELEASE or REJECT),
// printed after commitSync() reported the acknowledgement committed; an acknowledgement the
// broker refused prints "FAILED PARTITION OFFSET ERROR". It polls until STOP_FILE exists, then
// closes the consumer and exits 0. PAUSE_MS: a pause after each poll that returned records,
// before acknowledging them (the member holds them meanwhile).

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.TopicIdPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class ShareClient {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String group = args[1];
        String topic = args[2];
        File stop = new File(args[3]);
        long pause = args.length > 4 ? Long.parseLong(args[4]) : 0;
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("share.acknowledgement.mode", "explicit");
        props.put("max.poll.records", "7");
        try (KafkaShareConsumer<byte[], byte[]> consumer = new KafkaShareConsumer<>(
                props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (!stop.exists()) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(200));
                if (pause > 0 && !records.isEmpty()) {
                    Thread.sleep(pause);
                }
                List<String> lines = new ArrayList<>();
                for (ConsumerRecord<byte[], byte[]> record : records) {
                    String value = new String(record.value(), StandardCharsets.UTF_8);
                    short count = record.deliveryCount().orElse((short) 0);
                    AcknowledgeType type;
                    if (value.startsWith("x:")) {
                        type = AcknowledgeType.REJECT;
                    } else if (value.startsWith("r:") && count == 1) {
                        type = AcknowledgeType.RELEASE;
                    } else {
                        type = AcknowledgeType.ACCEPT;
                    }
                    consumer.acknowledge(record, type);
                    lines.add(type + " " + record.partition() + " " + record.offset() + " "
                            + count + " " + value);
                }
                if (lines.isEmpty()) {
                    continue;
                }
                Map<TopicIdPartition, java.util.Optional<org.apache.kafka.common.KafkaException>>
                        results = consumer.commitSync();
                Set<Integer> failed = new java.util.HashSet<>();
                for (var entry : results.entrySet()) {
                    if (entry.getValue().isPresent()) {
                        failed.add(entry.getKey().partition());
                        System.out.println("FAILED " + entry.getKey().partition() + " -1 "
                                + entry.getValue().get().getClass().getSimpleName());
                    }
                }
                for (String line : lines) {
                    int partition = Integer.parseInt(line.split(" ")[1]);
                    if (!failed.contains(partition)) {
                        System.out.println(line);
                    }
                }
                System.out.flush();
            }
        }
    }
}
